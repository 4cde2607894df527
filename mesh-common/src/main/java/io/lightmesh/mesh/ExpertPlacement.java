package io.lightmesh.mesh;

import io.lightmesh.proto.v1.ExpertAssignment;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.ShardPlacement;

import java.util.ArrayList;
import java.util.List;

/**
 * Which shard holds which (layer, expert): an immutable value. {@link #shardOf} answers the first shard holding a
 * pair; every pair must be held by some shard ({@link #missing()} lists those that are not).
 */
public final class ExpertPlacement {

    /** One shard: its id, address, and the layers / experts it holds (empty arrays mean all). */
    public record Shard(String id, String address, int[] layers, int[] experts) {
        public boolean holds(int layer, int expert) {
            return (layers.length == 0 || contains(layers, layer)) && (experts.length == 0 || contains(experts, expert));
        }

        private static boolean contains(int[] a, int v) {
            for (int x : a) if (x == v) return true;
            return false;
        }

        ExpertAssignment toProto() {
            ExpertAssignment.Builder b = ExpertAssignment.newBuilder();
            for (int l : layers) b.addLayers(l);
            for (int e : experts) b.addExperts(e);
            return b.build();
        }
    }

    private final int numLayers, numExperts;
    private final List<Shard> shards;
    private final int[] owner; // [layer * E + expert] -> shard index, -1 where none

    public ExpertPlacement(int numLayers, int numExperts, List<Shard> shards) {
        this.numLayers = numLayers;
        this.numExperts = numExperts;
        this.shards = List.copyOf(shards);
        this.owner = new int[numLayers * numExperts];
        for (int l = 0; l < numLayers; l++) {
            for (int e = 0; e < numExperts; e++) {
                int o = -1;
                for (int s = 0; s < this.shards.size() && o < 0; s++) if (this.shards.get(s).holds(l, e)) o = s;
                owner[l * numExperts + e] = o;
            }
        }
    }

    /**
     * {@code count} shards splitting the experts of every layer round-robin: shard i holds experts e with
     * e % count == i. Addresses are given in shard order.
     */
    public static ExpertPlacement roundRobin(int numLayers, int numExperts, List<String> addresses) {
        int count = addresses.size();
        List<Shard> shards = new ArrayList<>();
        for (int i = 0; i < count; i++) shards.add(new Shard("expert-" + i, addresses.get(i), new int[0], expertsOf(i, count, numExperts)));
        return new ExpertPlacement(numLayers, numExperts, shards);
    }

    /** The experts shard {@code index} of {@code count} holds in round-robin placement. */
    public static int[] expertsOf(int index, int count, int numExperts) {
        if (index < 0 || index >= count) throw new IllegalArgumentException("shard " + index + " of " + count);
        List<Integer> es = new ArrayList<>();
        for (int e = index; e < numExperts; e += count) es.add(e);
        return es.stream().mapToInt(Integer::intValue).toArray();
    }

    public int numLayers() { return numLayers; }
    public int numExperts() { return numExperts; }
    public List<Shard> shards() { return shards; }

    /** Index into {@link #shards()} of the shard serving (layer, expert); -1 when none holds it. */
    public int shardOf(int layer, int expert) { return owner[layer * numExperts + expert]; }

    /** "layer/expert" of every pair no shard holds; empty when the placement covers the model. */
    public List<String> missing() {
        List<String> m = new ArrayList<>();
        for (int i = 0; i < owner.length; i++) if (owner[i] < 0) m.add(i / numExperts + "/" + i % numExperts);
        return m;
    }

    public PlacementMap toProto() {
        PlacementMap.Builder b = PlacementMap.newBuilder().setNumLayers(numLayers).setNumExperts(numExperts);
        for (Shard s : shards) b.addShards(ShardPlacement.newBuilder().setShardId(s.id()).setAddress(s.address()).setAssignment(s.toProto()));
        return b.build();
    }

    public static ExpertPlacement fromProto(PlacementMap p) {
        List<Shard> shards = new ArrayList<>();
        for (ShardPlacement s : p.getShardsList()) {
            shards.add(new Shard(s.getShardId(), s.getAddress(),
                    s.getAssignment().getLayersList().stream().mapToInt(Integer::intValue).toArray(),
                    s.getAssignment().getExpertsList().stream().mapToInt(Integer::intValue).toArray()));
        }
        return new ExpertPlacement(p.getNumLayers(), p.getNumExperts(), shards);
    }
}
