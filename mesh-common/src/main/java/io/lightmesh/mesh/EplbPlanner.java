package io.lightmesh.mesh;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Expert placement by the EPLB method (DeepSeek's expert-parallel load balancer), one layer at a time. Pure: no
 * network, no clock, no randomness, so the same input gives the same plan on every controller.
 *
 * <ol>
 *   <li>Replicate: every expert gets one copy; then, while a slot is free, the expert with the highest load per
 *       replica gets one more copy (at most one per shard; experts without load are never replicated).</li>
 *   <li>Pack: replicas, heaviest per-replica load first, each onto the least-loaded shard that has a free slot and
 *       does not hold that expert yet.</li>
 * </ol>
 * A replicated expert's load is taken as split evenly over its replicas (workers split its rows so).
 * Ties break deterministically: lower expert id first; among shards, lower load in this layer, then lower load
 * over the layers planned before (so the layers' hot spots do not all land on shard 0), then fewer experts held,
 * then lower shard index.
 *
 * <p>Greedy packing is a 4/3-approximation, so on a few inputs it loses to round-robin; a layer where it would is
 * given the round-robin placement instead (when every shard has room for its round-robin share), so no layer's
 * busiest shard is ever busier than under the static placement.
 *
 * <p>Slots are per layer: a shard with {@code slots = 3} may hold 3 experts of every layer.
 */
public final class EplbPlanner {
    private EplbPlanner() {}

    /**
     * A plan: for each layer and shard (in the order of the slots given), the experts it holds, ascending.
     *
     * @param experts [layer][shard] -> expert ids
     */
    public record Plan(int[][][] experts) {
        public int numLayers() { return experts.length; }
        public int numShards() { return experts.length == 0 ? 0 : experts[0].length; }

        /** Copies of each expert of {@code layer}. */
        public int[] replicas(int layer, int numExperts) {
            int[] r = new int[numExperts];
            for (int[] held : experts[layer]) for (int e : held) r[e]++;
            return r;
        }

        public boolean holds(int layer, int shard, int expert) {
            return Arrays.binarySearch(experts[layer][shard], expert) >= 0;
        }
    }

    /**
     * Plans every layer.
     *
     * @param load  [layer][expert] load (tokens/s; any non-negative measure)
     * @param slots per shard, how many experts of one layer it may hold; their sum must cover the experts
     */
    public static Plan plan(double[][] load, int[] slots) {
        int[][] byLayer = new int[load.length][];
        java.util.Arrays.fill(byLayer, slots);
        return plan(load, byLayer);
    }

    /** As {@link #plan(double[][], int[])}, with each layer's own slots: {@code slots[layer][shard]}. */
    public static Plan plan(double[][] load, int[][] slots) {
        if (slots.length != load.length) throw new IllegalArgumentException("slots for " + slots.length + " layers, load for " + load.length);
        int S = slots.length == 0 ? 0 : slots[0].length;
        if (load.length > 0 && S == 0) throw new IllegalArgumentException("no shard to place experts on");
        for (int[] ls : slots) {
            if (ls.length != S) throw new IllegalArgumentException("every layer needs slots for the same " + S + " shards");
            for (int s : ls) if (s < 1) throw new IllegalArgumentException("a shard needs at least one slot, got " + s);
        }
        double[] prior = new double[S];
        int[][][] out = new int[load.length][][];
        for (int l = 0; l < load.length; l++) {
            out[l] = planLayer(load[l], slots[l], prior);
            double[] sl = shardLoads(load[l], out[l]);
            for (int s = 0; s < S; s++) prior[s] += sl[s];
        }
        return new Plan(out);
    }

    /** One layer; {@code prior} is each shard's load from the layers planned before (a tie-break only). */
    static int[][] planLayer(double[] load, int[] slots, double[] prior) {
        int E = load.length, S = slots.length;
        long total = 0;
        for (int s : slots) total += s;
        if (total < E) throw new IllegalArgumentException(E + " experts do not fit in " + total + " slots of " + S + " shards");
        for (double x : load) if (!(x >= 0) || Double.isInfinite(x)) throw new IllegalArgumentException("load must be finite and >= 0, got " + x);

        // replicate
        int[] replicas = new int[E];
        Arrays.fill(replicas, 1);
        if (!fits(replicas, slots)) throw new IllegalArgumentException(E + " experts do not fit in the slots " + Arrays.toString(slots));
        boolean[] capped = new boolean[E]; // one more copy would no longer fit
        for (long used = E; used < total; ) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                if (capped[e] || replicas[e] >= S || load[e] <= 0) continue;
                if (best < 0 || load[e] / replicas[e] > load[best] / replicas[best]) best = e;
            }
            if (best < 0) break;
            replicas[best]++;
            if (fits(replicas, slots)) used++;
            else { replicas[best]--; capped[best] = true; }
        }

        // pack, heaviest replica first
        List<int[]> items = new ArrayList<>(); // {expert}
        for (int e = 0; e < E; e++) for (int r = 0; r < replicas[e]; r++) items.add(new int[]{e});
        items.sort((a, b) -> {
            int c = Double.compare(load[b[0]] / replicas[b[0]], load[a[0]] / replicas[a[0]]);
            return c != 0 ? c : Integer.compare(a[0], b[0]);
        });
        boolean[][] holds = new boolean[S][E];
        int[] count = new int[S];
        double[] shardLoad = new double[S];
        for (int[] it : items) {
            int e = it[0];
            double w = load[e] / replicas[e];
            int pick = -1;
            for (int s = 0; s < S; s++) {
                if (count[s] >= slots[s] || holds[s][e]) continue;
                if (pick < 0 || lighter(s, pick, shardLoad, prior, count)) pick = s;
            }
            if (pick < 0) pick = makeRoom(e, holds, count, slots, shardLoad, load, replicas);
            if (pick < 0) { holds = null; break; }
            holds[pick][e] = true;
            count[pick]++;
            shardLoad[pick] += w;
        }
        int[][] greedy = holds != null ? toLists(holds) : construct(replicas, slots);

        // never worse than round-robin where round-robin fits
        if (roundRobinFits(E, slots)) {
            int[][] rr = roundRobin(E, S);
            if (max(shardLoads(load, greedy)) > max(shardLoads(load, rr))) return rr;
        }
        return greedy;
    }

    private static boolean lighter(int s, int t, double[] load, double[] prior, int[] count) {
        if (load[s] != load[t]) return load[s] < load[t];
        if (prior[s] != prior[t]) return prior[s] < prior[t];
        if (count[s] != count[t]) return count[s] < count[t];
        return s < t;
    }

    /**
     * Every shard with a free slot already holds {@code e}: move some other expert f from a full shard u (which
     * lacks e) to a shard t with a free slot (which lacks f), and return u, whose slot e then takes. Exists whenever
     * the copies fit: e has fewer copies placed than shards, so some u lacks e, and u is full.
     */
    private static int makeRoom(int e, boolean[][] holds, int[] count, int[] slots, double[] shardLoad, double[] load, int[] replicas) {
        int S = holds.length, E = load.length;
        for (int t = 0; t < S; t++) {
            if (count[t] >= slots[t]) continue;
            for (int u = 0; u < S; u++) {
                if (u == t || holds[u][e]) continue;
                for (int f = 0; f < E; f++) {
                    if (holds[u][f] && !holds[t][f]) {
                        double w = load[f] / replicas[f];
                        holds[u][f] = false; count[u]--; shardLoad[u] -= w;
                        holds[t][f] = true; count[t]++; shardLoad[t] += w;
                        return u;
                    }
                }
            }
        }
        return -1; // the caller falls back to construct()
    }

    /**
     * Whether copies {@code replicas} (each on distinct shards) fit in {@code slots}: for every k, the k most
     * replicated experts need at most sum_s min(slots_s, k) copies (Gale-Ryser, with shard capacities as bounds).
     */
    static boolean fits(int[] replicas, int[] slots) {
        int[] r = replicas.clone();
        Arrays.sort(r);
        long need = 0;
        for (int k = 1; k <= r.length; k++) {
            need += r[r.length - k];
            long have = 0;
            for (int c : slots) have += Math.min(c, k);
            if (need > have) return false;
        }
        return true;
    }

    /**
     * A placement of {@code replicas} that ignores load, for the rare inputs where greedy packing with one swap gets
     * stuck: most replicated expert first, onto the shards with the most free slots (always succeeds when
     * {@link #fits} holds).
     */
    static int[][] construct(int[] replicas, int[] slots) {
        int E = replicas.length, S = slots.length;
        Integer[] order = new Integer[E];
        for (int e = 0; e < E; e++) order[e] = e;
        Arrays.sort(order, (a, b) -> replicas[a] != replicas[b] ? Integer.compare(replicas[b], replicas[a]) : Integer.compare(a, b));
        int[] free = slots.clone();
        boolean[][] holds = new boolean[S][E];
        for (int e : order) {
            Integer[] shards = new Integer[S];
            for (int s = 0; s < S; s++) shards[s] = s;
            Arrays.sort(shards, (a, b) -> free[a] != free[b] ? Integer.compare(free[b], free[a]) : Integer.compare(a, b));
            for (int i = 0; i < replicas[e]; i++) {
                int s = shards[i];
                if (free[s] <= 0) throw new IllegalStateException("copies " + Arrays.toString(replicas) + " do not fit " + Arrays.toString(slots));
                holds[s][e] = true;
                free[s]--;
            }
        }
        return toLists(holds);
    }

    private static int[][] toLists(boolean[][] holds) {
        int[][] out = new int[holds.length][];
        for (int s = 0; s < holds.length; s++) {
            int n = 0;
            for (boolean h : holds[s]) if (h) n++;
            out[s] = new int[n];
            for (int e = 0, i = 0; e < holds[s].length; e++) if (holds[s][e]) out[s][i++] = e;
        }
        return out;
    }

    // ---- measures ----

    /** The static placement of one layer: shard s holds the experts e with e % S == s ({@link ExpertPlacement#roundRobin}). */
    public static int[][] roundRobin(int numExperts, int numShards) {
        int[][] out = new int[numShards][];
        for (int s = 0; s < numShards; s++) out[s] = ExpertPlacement.expertsOf(s, numShards, numExperts);
        return out;
    }

    /** Whether every shard has room for its round-robin share. */
    public static boolean roundRobinFits(int numExperts, int[] slots) {
        for (int s = 0; s < slots.length; s++) if (slots[s] < (numExperts - s + slots.length - 1) / slots.length) return false;
        return true;
    }

    /** Each shard's load in one layer: each expert's load split evenly over the shards holding it. */
    public static double[] shardLoads(double[] load, int[][] expertsByShard) {
        int[] replicas = new int[load.length];
        for (int[] held : expertsByShard) for (int e : held) replicas[e]++;
        double[] out = new double[expertsByShard.length];
        for (int s = 0; s < out.length; s++) for (int e : expertsByShard[s]) out[s] += load[e] / replicas[e];
        return out;
    }

    /** Each shard's load summed over the layers of {@code plan}. */
    public static double[] shardLoads(double[][] load, Plan plan) {
        double[] out = new double[plan.numShards()];
        for (int l = 0; l < load.length; l++) {
            double[] sl = shardLoads(load[l], plan.experts()[l]);
            for (int s = 0; s < out.length; s++) out[s] += sl[s];
        }
        return out;
    }

    /** The static placement of every layer over {@code numShards} shards. */
    public static Plan roundRobinPlan(int numLayers, int numExperts, int numShards) {
        int[][][] out = new int[numLayers][][];
        for (int l = 0; l < numLayers; l++) out[l] = roundRobin(numExperts, numShards);
        return new Plan(out);
    }

    /** max / mean of shard loads; 1 when there is no load (nothing is imbalanced) or no shard. */
    public static double imbalance(double[] shardLoads) {
        if (shardLoads.length == 0) return 1;
        double sum = 0, max = 0;
        for (double x : shardLoads) { sum += x; max = Math.max(max, x); }
        return sum <= 0 ? 1 : max / (sum / shardLoads.length);
    }

    /** The imbalance {@code load} would have under the static round-robin placement over {@code numShards} shards. */
    public static double imbalanceStatic(double[][] load, int numShards) {
        if (numShards == 0 || load.length == 0) return 1;
        return imbalance(shardLoads(load, roundRobinPlan(load.length, load[0].length, numShards)));
    }

    static double max(double[] xs) {
        double m = 0;
        for (double x : xs) m = Math.max(m, x);
        return m;
    }
}
