package io.lightmesh.mesh;

import io.lightmesh.proto.v1.ExpertAssignment;
import io.lightmesh.proto.v1.LayerExperts;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.ShardPlacement;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * Which shards hold which (layer, expert), at one version: an immutable value. A pair may be held by several
 * shards (replicas, {@link #replicas}); every pair must be held by some shard for the mesh to serve
 * ({@link #missing()} lists those that are not). Version 0 is a static map (round-robin or discovered without a
 * controller); a placement controller publishes growing versions.
 */
public final class ExpertPlacement {

    /**
     * One shard: its id, address and the (layer, expert) pairs it holds, either as a product of layers and experts
     * (empty arrays mean all: the form of the first version) or as an explicit list of experts per layer.
     */
    public static final class Shard {
        private final String id, address;
        private final int[] layers, experts;          // product form; both empty with explicit
        private final Map<Integer, int[]> explicit;   // layer -> sorted experts; null in product form

        /** The product form: every expert of {@code experts} in every layer of {@code layers} (empty: all). */
        public Shard(String id, String address, int[] layers, int[] experts) {
            this.id = Objects.requireNonNull(id);
            this.address = Objects.requireNonNull(address);
            this.layers = layers.clone();
            this.experts = experts.clone();
            this.explicit = null;
        }

        private Shard(String id, String address, Map<Integer, int[]> explicit) {
            this.id = Objects.requireNonNull(id);
            this.address = Objects.requireNonNull(address);
            this.layers = new int[0];
            this.experts = new int[0];
            this.explicit = explicit;
        }

        /** The explicit form: exactly the experts listed per layer (a layer left out holds none). */
        public static Shard of(String id, String address, Map<Integer, int[]> expertsByLayer) {
            TreeMap<Integer, int[]> m = new TreeMap<>();
            for (Map.Entry<Integer, int[]> en : expertsByLayer.entrySet()) {
                int[] es = Arrays.stream(en.getValue()).distinct().sorted().toArray();
                if (es.length > 0) m.put(en.getKey(), es);
            }
            return new Shard(id, address, Collections.unmodifiableMap(m));
        }

        /** The explicit form from pairs {@code layer * numExperts + expert}. */
        public static Shard ofPairs(String id, String address, int numExperts, int[] pairs) {
            TreeMap<Integer, List<Integer>> m = new TreeMap<>();
            for (int p : pairs) m.computeIfAbsent(p / numExperts, k -> new ArrayList<>()).add(p % numExperts);
            TreeMap<Integer, int[]> a = new TreeMap<>();
            m.forEach((l, es) -> a.put(l, es.stream().mapToInt(Integer::intValue).toArray()));
            return of(id, address, a);
        }

        public String id() { return id; }
        public String address() { return address; }
        /** Product form: the layers (empty: all). Explicit form: empty; see {@link #explicitExperts()}. */
        public int[] layers() { return layers.clone(); }
        /** Product form: the experts (empty: all). Explicit form: empty; see {@link #explicitExperts()}. */
        public int[] experts() { return experts.clone(); }
        /** Explicit form: experts per layer (sorted); null in product form. */
        public Map<Integer, int[]> explicitExperts() { return explicit; }

        /** This shard at another address (the address is known after binding). */
        public Shard at(String newAddress) {
            return explicit == null ? new Shard(id, newAddress, layers, experts) : new Shard(id, newAddress, explicit);
        }

        public boolean holds(int layer, int expert) {
            if (explicit != null) {
                int[] es = explicit.get(layer);
                return es != null && Arrays.binarySearch(es, expert) >= 0;
            }
            return (layers.length == 0 || contains(layers, layer)) && (experts.length == 0 || contains(experts, expert));
        }

        /** Every held pair as {@code layer * numExperts + expert}, ascending. */
        public int[] pairs(int numLayers, int numExperts) {
            List<Integer> ps = new ArrayList<>();
            for (int l = 0; l < numLayers; l++) for (int e = 0; e < numExperts; e++) if (holds(l, e)) ps.add(l * numExperts + e);
            return ps.stream().mapToInt(Integer::intValue).toArray();
        }

        private static boolean contains(int[] a, int v) {
            for (int x : a) if (x == v) return true;
            return false;
        }

        ShardPlacement toProto() {
            ShardPlacement.Builder b = ShardPlacement.newBuilder().setShardId(id).setAddress(address);
            if (explicit == null) {
                ExpertAssignment.Builder a = ExpertAssignment.newBuilder();
                for (int l : layers) a.addLayers(l);
                for (int e : experts) a.addExperts(e);
                b.setAssignment(a);
            } else {
                b.addAllLayerExperts(layerExperts(explicit));
            }
            return b.build();
        }

        /**
         * A shard as its Worker.Describe answers: the exact holdings ({@code expert_shard.held}) when the shard
         * reports them, else the product form of the first version ({@code experts}); at {@code address}.
         */
        public static Shard fromWorkerInfo(io.lightmesh.proto.v1.WorkerInfo w, String address) {
            if (w.hasExpertShard()) return of(w.getWorkerId(), address, fromLayerExperts(w.getExpertShard().getHeldList()));
            return new Shard(w.getWorkerId(), address, w.getExperts().getLayersList().stream().mapToInt(Integer::intValue).toArray(),
                    w.getExperts().getExpertsList().stream().mapToInt(Integer::intValue).toArray());
        }

        static Shard fromProto(ShardPlacement s) {
            if (s.getLayerExpertsCount() > 0) return of(s.getShardId(), s.getAddress(), fromLayerExperts(s.getLayerExpertsList()));
            return new Shard(s.getShardId(), s.getAddress(), s.getAssignment().getLayersList().stream().mapToInt(Integer::intValue).toArray(),
                    s.getAssignment().getExpertsList().stream().mapToInt(Integer::intValue).toArray());
        }

        @Override public boolean equals(Object o) {
            if (!(o instanceof Shard s) || !id.equals(s.id) || !address.equals(s.address)) return false;
            if ((explicit == null) != (s.explicit == null)) return false;
            if (explicit == null) return Arrays.equals(layers, s.layers) && Arrays.equals(experts, s.experts);
            if (!explicit.keySet().equals(s.explicit.keySet())) return false;
            for (Map.Entry<Integer, int[]> en : explicit.entrySet()) if (!Arrays.equals(en.getValue(), s.explicit.get(en.getKey()))) return false;
            return true;
        }

        @Override public int hashCode() { return Objects.hash(id, address); }

        @Override public String toString() { return id + "@" + address; }
    }

    /** Per-layer lists ({@link LayerExperts}) of experts per layer, layers ascending. */
    public static List<LayerExperts> layerExperts(Map<Integer, int[]> byLayer) {
        List<LayerExperts> out = new ArrayList<>();
        new TreeMap<>(byLayer).forEach((l, es) -> {
            if (es.length > 0) out.add(LayerExperts.newBuilder().setLayer(l).addAllExperts(Arrays.stream(es).boxed().toList()).build());
        });
        return out;
    }

    /** Experts per layer from {@link LayerExperts} lists (a layer listed twice: the union). */
    public static Map<Integer, int[]> fromLayerExperts(List<LayerExperts> list) {
        TreeMap<Integer, int[]> m = new TreeMap<>();
        for (LayerExperts le : list) {
            int[] add = le.getExpertsList().stream().mapToInt(Integer::intValue).toArray();
            m.merge(le.getLayer(), add, (a, b) -> java.util.stream.IntStream.concat(Arrays.stream(a), Arrays.stream(b)).distinct().sorted().toArray());
        }
        return m;
    }

    private final int numLayers, numExperts;
    private final long version;
    private final List<Shard> shards;
    private final int[][] replicas; // [layer * E + expert] -> indices into shards holding it, ascending

    public ExpertPlacement(int numLayers, int numExperts, List<Shard> shards) {
        this(numLayers, numExperts, shards, 0);
    }

    public ExpertPlacement(int numLayers, int numExperts, List<Shard> shards, long version) {
        if (numLayers <= 0 || numExperts <= 0) throw new IllegalArgumentException("placement of " + numLayers + " layers x " + numExperts + " experts");
        if (version < 0) throw new IllegalArgumentException("negative placement version " + version);
        this.numLayers = numLayers;
        this.numExperts = numExperts;
        this.version = version;
        this.shards = List.copyOf(shards);
        java.util.Set<String> ids = new java.util.HashSet<>();
        for (Shard s : this.shards) if (!ids.add(s.id())) throw new IllegalArgumentException("shard id " + s.id() + " twice in a placement");
        this.replicas = new int[numLayers * numExperts][];
        int[] buf = new int[this.shards.size()];
        for (int l = 0; l < numLayers; l++) {
            for (int e = 0; e < numExperts; e++) {
                int c = 0;
                for (int s = 0; s < this.shards.size(); s++) if (this.shards.get(s).holds(l, e)) buf[c++] = s;
                replicas[l * numExperts + e] = Arrays.copyOf(buf, c);
            }
        }
    }

    /**
     * {@code count} shards splitting the experts of every layer round-robin: shard i holds experts e with
     * e % count == i. Addresses are given in shard order. Version 0.
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
    public long version() { return version; }
    public List<Shard> shards() { return shards; }

    /** Index into {@link #shards()} of the first shard holding (layer, expert); -1 when none holds it. */
    public int shardOf(int layer, int expert) {
        int[] r = replicas[layer * numExperts + expert];
        return r.length == 0 ? -1 : r[0];
    }

    /** Indices into {@link #shards()} of every shard holding (layer, expert), ascending; empty when none. Do not modify. */
    public int[] replicas(int layer, int expert) { return replicas[layer * numExperts + expert]; }

    /** Index into {@link #shards()} of the shard with this id; -1 when absent. */
    public int indexOf(String shardId) {
        for (int s = 0; s < shards.size(); s++) if (shards.get(s).id().equals(shardId)) return s;
        return -1;
    }

    /** "layer/expert" of every pair no shard holds; empty when the placement covers the model. */
    public List<String> missing() {
        List<String> m = new ArrayList<>();
        for (int i = 0; i < replicas.length; i++) if (replicas[i].length == 0) m.add(i / numExperts + "/" + i % numExperts);
        return m;
    }

    /** The same shards at another version. */
    public ExpertPlacement withVersion(long v) { return new ExpertPlacement(numLayers, numExperts, shards, v); }

    public PlacementMap toProto() {
        PlacementMap.Builder b = PlacementMap.newBuilder().setNumLayers(numLayers).setNumExperts(numExperts).setVersion(version);
        for (Shard s : shards) b.addShards(s.toProto());
        return b.build();
    }

    /** @throws IllegalArgumentException when the map is malformed (no layers or experts, a shard id twice) */
    public static ExpertPlacement fromProto(PlacementMap p) {
        List<Shard> shards = new ArrayList<>();
        for (ShardPlacement s : p.getShardsList()) shards.add(Shard.fromProto(s));
        return new ExpertPlacement(p.getNumLayers(), p.getNumExperts(), shards, p.getVersion());
    }

    @Override public boolean equals(Object o) {
        return o instanceof ExpertPlacement p && p.numLayers == numLayers && p.numExperts == numExperts && p.version == version && p.shards.equals(shards);
    }

    @Override public int hashCode() { return Objects.hash(numLayers, numExperts, version, shards); }

    @Override public String toString() { return "placement v" + version + " " + shards; }
}
