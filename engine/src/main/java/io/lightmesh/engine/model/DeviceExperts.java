package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.DeviceOps.ExpertSet;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.weights.WeightStore;

import java.util.ArrayList;
import java.util.List;
import java.util.function.BiPredicate;

/**
 * SwiGLU experts computed on the device, as an expert shard on a GPU runs them: each hosted (layer, expert) keeps its
 * W1, W3, W2 on the device (a set of one expert each), and each incoming batch runs grouped by expert
 * ({@link GroupedExperts}: two launches per chosen expert's set, or the per-expert pieces with
 * -Dlightmesh.experts.grouped=per-expert), not a launch per row. The host only groups the pairs and adds the chosen
 * experts' outputs with their router weights.
 *
 * <p>A small batch (up to {@link #smallSlots} non-skipped slots, a decode step's; {@code -Dlightmesh.shard.smallBatch},
 * 0 turns it off) takes the decode path's matrix-vector MoE kernels instead ({@link DeviceOps#runExperts}: gate, up
 * and SiLU in one pass, then down, straight from the uploaded rows into each slot's row): one upload (the slots' rows
 * and, in the same buffer, each chosen expert's ids), two launches per chosen expert and 8 slots, one read-back; the
 * grouped path takes three uploads and six launches per chosen expert (gather, W1, W3, SiLU, W2, scatter). Both
 * compute each slot's row with the same matrix-vector products (fp32 results equal bit for bit).
 *
 * <p>Holdings are live: {@code hosts} is asked on every call, an expert it newly accepts is placed on the device on
 * first use (or at {@link #place}), and one it no longer accepts is released at the next call of its layer (or at
 * {@link #release}). Safe for concurrent calls (one at a time on the device).
 */
public final class DeviceExperts implements ExpertExecutor, AutoCloseable {
    private final ModelConfig config;
    private final WeightStore weights;
    private final DeviceOps d;
    private final BiPredicate<Integer, Integer> hosts;
    private final ExpertSet[][] placed; // [layer][expert]: a set of that one expert, null while not on the device
    private Buffer x, pairs, groupTokens, groupPairs, xe, act, up, de; // scratch for `rows` rows
    private int rows;
    /** Non-skipped slots up to which a call takes the matrix-vector MoE kernels (0: never). */
    private final int smallSlots;
    /** The small path's device scratch, made at its first call: {@link SmallBatch}. */
    private SmallBatch small;
    private long smallCalls, groupedCalls;

    /** The default of {@code -Dlightmesh.shard.smallBatch}: a decode step's slots at a shard (batch 16, top-2, 2 shards). */
    public static final int SMALL_SLOTS = 16;

    /** Places every (layer, expert) that {@code hosts} accepts now; later changes of its answers are followed. */
    public DeviceExperts(ModelConfig config, WeightStore weights, DeviceOps d, BiPredicate<Integer, Integer> hosts) {
        this(config, weights, d, hosts, Integer.getInteger("lightmesh.shard.smallBatch", SMALL_SLOTS));
    }

    /** @param smallSlots non-skipped slots up to which a call takes the matrix-vector MoE kernels (0: never) */
    public DeviceExperts(ModelConfig config, WeightStore weights, DeviceOps d, BiPredicate<Integer, Integer> hosts, int smallSlots) {
        this.config = config;
        this.weights = weights;
        this.d = d;
        this.hosts = hosts;
        this.placed = new ExpertSet[config.numLayers()][config.numExperts()];
        this.smallSlots = Math.max(0, smallSlots);
        for (int l = 0; l < config.numLayers(); l++) {
            for (int e = 0; e < config.numExperts(); e++) if (hosts.test(l, e)) place(l, e);
        }
    }

    /** Puts expert e of layer l on the device now (idempotent). */
    public synchronized void place(int layer, int expert) {
        if (placed[layer][expert] != null) return;
        String p = "model.layers." + layer + ".block_sparse_moe.experts." + expert + ".";
        long h = config.hiddenSize(), I = config.intermediateSize();
        placed[layer][expert] = d.experts(
                new io.lightmesh.engine.tensor.Tensor[]{weights.get(p + "w1.weight", I, h)},
                new io.lightmesh.engine.tensor.Tensor[]{weights.get(p + "w3.weight", I, h)},
                new io.lightmesh.engine.tensor.Tensor[]{weights.get(p + "w2.weight", h, I)});
    }

    /** Frees expert e of layer l's device memory (idempotent). */
    public synchronized void release(int layer, int expert) {
        ExpertSet set = placed[layer][expert];
        if (set == null) return;
        d.release(set);
        placed[layer][expert] = null;
    }

    /** Whether expert e of layer l is on the device now. */
    public synchronized boolean placed(int layer, int expert) { return placed[layer][expert] != null; }

    /** As {@link LocalExperts#run}; slots of id -1 are skipped (they add nothing). */
    @Override
    public synchronized void run(int layer, float[] xs, int n, int k, int[] experts, float[] w, float[] out) {
        int h = config.hiddenSize(), E = config.numExperts();
        for (int e = 0; e < E; e++) if (placed[layer][e] != null && !hosts.test(layer, e)) release(layer, e);
        for (int i = 0; i < n * k; i++) {
            int e = experts[i];
            if (e < -1 || e >= E) throw new IllegalArgumentException("expert id " + e + " outside -1.." + (E - 1));
            if (e < 0) continue;
            if (!hosts.test(layer, e)) {
                throw new IllegalArgumentException("expert " + e + " of layer " + layer + " is not hosted here");
            }
            place(layer, e);
        }
        java.util.Arrays.fill(out, 0, n * h, 0f);
        if (n == 0) return;
        int slots = 0;
        for (int i = 0; i < n * k; i++) if (experts[i] >= 0) slots++;
        if (slots == 0) return;
        if (slots <= smallSlots) {
            smallCalls++;
            if (small == null) small = new SmallBatch(d, E, h, config.intermediateSize(), smallSlots);
            small.run(placed[layer], xs, n, k, experts, w, slots, out);
            return;
        }
        groupedCalls++;
        grow(n, k);
        d.write(x, 0, xs, 0, n * h);
        ExpertSet[] sets = placed[layer];
        GroupedExperts.run(d, new GroupedExperts.Placement() {
            public ExpertSet set(int e) { return sets[e]; }
            public int slot(int e) { return 0; }
        }, E, h, config.intermediateSize(), x, n, k, experts,
                new GroupedExperts.Work(groupTokens, groupPairs, xe, act, up, de), pairs);
        // out[t] = sum_j w[t, j] * pairs[t * k + j]: the pairs come back, the weighted sum is the host's
        float[] ys = new float[n * k * h];
        d.read(pairs, 0, ys, 0, n * k * h);
        for (int p = 0; p < n * k; p++) {
            if (experts[p] < 0) continue;
            float g = w[p];
            int o = (p / k) * h, yo = p * h;
            for (int i = 0; i < h; i++) out[o + i] += g * ys[yo + i];
        }
    }

    /** Calls computed so far by the matrix-vector MoE kernels (small batches) and by grouped products. */
    public record Paths(long matvec, long grouped) {}

    /** Which path the calls so far took. */
    public synchronized Paths paths() { return new Paths(smallCalls, groupedCalls); }

    /** The non-skipped slots up to which a call takes the matrix-vector MoE kernels (0: never). */
    public int smallSlots() { return smallSlots; }

    /** Scratch for n rows of k pairs (doubling). */
    private void grow(int n, int k) {
        if (x != null && rows >= n && pairs.length() >= (long) n * k * config.hiddenSize()) return;
        closeScratch();
        rows = Math.max(n, 2 * rows);
        // one expert may take up to n * k pairs: a caller may name it in several slots of a row (a shard fills slots
        // held elsewhere with a hosted expert of weight 0)
        long h = config.hiddenSize(), I = config.intermediateSize(), r = rows, pk = r * k;
        x = d.floats(r * h);
        pairs = d.floats(pk * h);
        groupTokens = d.ints(pk);
        groupPairs = d.ints(pk);
        xe = d.floats(pk * h);
        act = d.floats(pk * I);
        up = d.floats(pk * I);
        de = d.floats(pk * h);
    }

    private void closeScratch() {
        List<Buffer> all = new ArrayList<>();
        for (Buffer b : new Buffer[]{x, pairs, groupTokens, groupPairs, xe, act, up, de}) if (b != null) all.add(b);
        for (Buffer b : all) b.close();
        x = pairs = groupTokens = groupPairs = xe = act = up = de = null;
    }

    @Override
    public synchronized void close() {
        closeScratch();
        if (small != null) small.close();
        small = null;
        rows = 0;
        for (int l = 0; l < placed.length; l++) for (int e = 0; e < placed[l].length; e++) release(l, e);
    }
}
