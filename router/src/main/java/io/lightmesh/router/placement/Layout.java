package io.lightmesh.router.placement;

import io.lightmesh.proto.v1.LayerExperts;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.ShardPlacement;
import io.lightmesh.proto.v1.WorkerInfo;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One version of the placement, as the controller publishes it: which shard holds which (layer, expert), replicas
 * allowed. Immutable; every change makes a new one.
 *
 * @param shards in a stable order (the planner's shard order)
 */
public record Layout(long version, int numLayers, int numExperts, List<Shard> shards) {

    /**
     * One shard and its holdings.
     *
     * @param experts [layer] -> expert ids held, ascending
     */
    public record Shard(String id, String address, int[][] experts) {
        public boolean holds(int layer, int expert) { return Arrays.binarySearch(experts[layer], expert) >= 0; }

        public int pairs() {
            int n = 0;
            for (int[] l : experts) n += l.length;
            return n;
        }

        /** The pairs this shard holds that {@code other} does not: [layer] -> experts. */
        public int[][] minus(int[][] other) {
            int[][] out = new int[experts.length][];
            for (int l = 0; l < experts.length; l++) {
                int[] o = other[l];
                out[l] = Arrays.stream(experts[l]).filter(e -> Arrays.binarySearch(o, e) < 0).toArray();
            }
            return out;
        }
    }

    public Layout {
        shards = List.copyOf(shards);
    }

    /** Copies of (layer, expert). */
    public int copies(int layer, int expert) {
        int n = 0;
        for (Shard s : shards) if (s.holds(layer, expert)) n++;
        return n;
    }

    /** Whether every (layer, expert) has a copy. */
    public boolean complete() {
        for (int l = 0; l < numLayers; l++) for (int e = 0; e < numExperts; e++) if (copies(l, e) == 0) return false;
        return true;
    }

    public Shard shard(String id) {
        for (Shard s : shards) if (s.id().equals(id)) return s;
        return null;
    }

    public int indexOf(String id) {
        for (int i = 0; i < shards.size(); i++) if (shards.get(i).id().equals(id)) return i;
        return -1;
    }

    /** [layer][shard] -> experts, the planner's form. */
    public int[][][] byLayer() {
        int[][][] out = new int[numLayers][shards.size()][];
        for (int l = 0; l < numLayers; l++) for (int s = 0; s < shards.size(); s++) out[l][s] = shards.get(s).experts()[l];
        return out;
    }

    public PlacementMap toProto() {
        PlacementMap.Builder b = PlacementMap.newBuilder().setNumLayers(numLayers).setNumExperts(numExperts).setVersion(version);
        for (Shard s : shards) {
            // a shard holding nothing is left out: an empty layer_experts would read as the (all-pairs) product form
            if (s.pairs() == 0) continue;
            b.addShards(ShardPlacement.newBuilder().setShardId(s.id()).setAddress(s.address()).addAllLayerExperts(toLayerExperts(s.experts())));
        }
        return b.build();
    }

    /** Non-empty layers as LayerExperts. */
    static List<LayerExperts> toLayerExperts(int[][] experts) {
        List<LayerExperts> out = new ArrayList<>();
        for (int l = 0; l < experts.length; l++) {
            if (experts[l].length == 0) continue;
            LayerExperts.Builder le = LayerExperts.newBuilder().setLayer(l);
            for (int e : experts[l]) le.addExperts(e);
            out.add(le.build());
        }
        return out;
    }

    static boolean isEmpty(int[][] experts) {
        for (int[] l : experts) if (l.length > 0) return false;
        return true;
    }

    /** A shard's holdings as it describes them ([layer] -> experts); the product form when it lists no pairs. */
    static int[][] heldBy(WorkerInfo w, int numLayers, int numExperts) {
        int[][] out = new int[numLayers][];
        if (w.hasExpertShard()) {
            List<List<Integer>> per = new ArrayList<>();
            for (int l = 0; l < numLayers; l++) per.add(new ArrayList<>());
            for (LayerExperts le : w.getExpertShard().getHeldList()) {
                if (le.getLayer() >= 0 && le.getLayer() < numLayers) per.get(le.getLayer()).addAll(le.getExpertsList());
            }
            for (int l = 0; l < numLayers; l++) out[l] = per.get(l).stream().mapToInt(Integer::intValue).distinct().sorted().toArray();
            return out;
        }
        List<Integer> layers = w.getExperts().getLayersList(), experts = w.getExperts().getExpertsList();
        for (int l = 0; l < numLayers; l++) {
            boolean layer = layers.isEmpty() || layers.contains(l);
            out[l] = !layer ? new int[0] : experts.isEmpty() ? java.util.stream.IntStream.range(0, numExperts).toArray()
                    : experts.stream().mapToInt(Integer::intValue).filter(e -> e >= 0 && e < numExperts).distinct().sorted().toArray();
        }
        return out;
    }
}
