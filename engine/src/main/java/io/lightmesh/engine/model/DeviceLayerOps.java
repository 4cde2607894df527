package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.ResidentDecoder.Scratch;

import java.util.Arrays;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

/**
 * {@link LayerOps} on the device, one launch (or one per row, for the decode attention) per operation: rows
 * [from, from + n) of a step, in their own {@link Scratch}. A decode micro-batch is one token of each of n sequences
 * (row t's state {@code dev[t]}); a prefill micro-batch is n consecutive tokens of one sequence, after the rows of the
 * micro-batch before it (the lightning layers as one recurrent scan over the rows, each softmax query over the grown
 * cache). Experts on the device ({@link DeviceOps#runExperts}, or grouped by expert for a prefill chunk), or remote:
 * x, ids and weights down to the host, the call out on {@link ResidentDecoder#calls}, its y back up in
 * {@link #finishMoe}.
 */
final class DeviceLayerOps implements LayerOps {
    private final ResidentDecoder r;
    private final DeviceOps d;
    final Scratch s;
    final int from, n;
    private final int[] tokens, pos;     // [n]: this micro-batch's token ids and positions
    private final DeviceState[] dev;     // decode: row t's sequence; prefill: [0] the one sequence of every row
    private final boolean prefill;       // rows are consecutive tokens of dev[0]
    private final boolean grouped;       // in-process experts grouped by expert (a prefill chunk), ids read at once
    private Future<float[]> pending;     // remote experts in flight
    private float[] down, y, w;          // remote experts: rows down (x | ids | weights), rows up, weights [n, K]
    private int[] ids;                   // remote experts: ids [n, K]
    /**
     * -Dlightmesh.device.remoteOneRead=false: x, ids and weights read back one by one (three syncs), to compare; read
     * at each step (a benchmark flips it between runs).
     */
    private final boolean oneRead = !"false".equalsIgnoreCase(System.getProperty("lightmesh.device.remoteOneRead", "true"));
    private boolean deviceGrouped;       // grouped experts grouped on the device (ids logged, not read per layer)
    private final Buffer routeTable;     // a prefill chunk routed on the device: its grouping's table; else null

    private DeviceLayerOps(ResidentDecoder r, Scratch s, int[] tokens, int[] pos, DeviceState[] dev, int from, int n,
                           boolean prefill, boolean grouped, Buffer routeTable) {
        this.r = r;
        this.d = r.d;
        this.s = s;
        this.from = from;
        this.n = n;
        this.tokens = tokens;
        this.pos = pos;
        this.dev = dev;
        this.prefill = prefill;
        this.grouped = grouped;
        this.routeTable = routeTable;
    }

    /** Decode rows [from, from + n) of a step: token t of the step is appended to {@code all[t]} at {@code pos[t]}. */
    static DeviceLayerOps decode(ResidentDecoder r, Scratch s, int[] tokens, int[] pos, DeviceState[] all, int from, int n) {
        return new DeviceLayerOps(r, s, Arrays.copyOfRange(tokens, from, from + n), Arrays.copyOfRange(pos, from, from + n),
                Arrays.copyOfRange(all, from, from + n), from, n, false, false, null);
    }

    /**
     * Prefill rows [from, from + n) of a chunk of one sequence, whose first token is at position {@code start};
     * {@code routeTable} non-null (grouped experts only): routed and grouped on the device into it
     * ({@link DeviceOps#routeAndGroup}), no host sync in the chunk.
     */
    static DeviceLayerOps prefill(ResidentDecoder r, Scratch s, int[] tokens, int start, DeviceState dev, int from, int n,
                                  boolean grouped, Buffer routeTable) {
        int[] pos = new int[n];
        for (int t = 0; t < n; t++) pos[t] = start + from + t;
        return new DeviceLayerOps(r, s, Arrays.copyOfRange(tokens, from, from + n), pos, new DeviceState[]{dev}, from, n,
                true, grouped, routeTable);
    }

    @Override
    public void embed() {
        if (routeTable != null) { // enqueued behind the previous chunk, no wait for it
            d.writeAsync(s.ids(), tokens, n);
            d.writeAsync(s.pos(), pos, n);
        } else {
            d.write(s.ids(), tokens, n);
            d.write(s.pos(), pos, n);
        }
        d.embed(r.embed, s.ids(), n, s.x());
        d.rmsNorm(s.x(), n, r.c.hiddenSize(), r.inNorm[0], (float) r.c.rmsNormEps(), s.x());
    }

    @Override
    public void lightning(int l, LightningAttention la) {
        int HD = la.H * la.D;
        d.matmul(s.x(), n, la.wQkv, s.qkv());                                 // qkv = SiLU(x W_qkv^T): [n, H, 3D]
        d.silu(s.qkv(), (long) n * 3 * HD);
        if (prefill) { // S advanced over the n rows in order: o [n, H*D]
            d.lightningScan(s.qkv(), n, la.H, la.D, r.decay[l], dev[0].lightning(l), s.o());
        } else { // one step of each row's sequence
            for (int i = 0; i < n; i++) d.lightningStep(s.qkv(), i, la.H, la.D, r.decay[l], dev[i].lightning(l), s.o());
        }
        d.matmul(s.x(), n, la.wGate, s.gate());                               // o = RMSNorm(o) * sigmoid(x W_gate^T)
        d.normGate(s.o(), n, HD, r.outNorm[l], (float) ModelConfig.LIGHTNING_NORM_EPS, s.gate());
    }

    @Override
    public void softmax(int l, SoftmaxAttention sa) {
        // q [n, H, D], k and v [n, KV, D], RoPE at each row's position
        d.matmul(s.x(), n, sa.wq, s.q());
        d.matmul(s.x(), n, sa.wk, s.k());
        d.matmul(s.x(), n, sa.wv, s.v());
        d.rope(s.q(), n, sa.H, sa.D, r.invFreq[l], sa.rope.rotaryDim / 2, s.pos());
        d.rope(s.k(), n, sa.KV, sa.D, r.invFreq[l], sa.rope.rotaryDim / 2, s.pos());
        if (prefill) { // the rows appended; row t sees the cache up to its own position: o [n, H*D]
            int len = dev[0].appendRows(l, s.k(), s.v(), 0, n);
            d.causalAttention(s.q(), n, sa.H, sa.KV, sa.D, dev[0].keys(l), dev[0].values(l), len - n + 1, s.o());
        } else { // each row appended to its sequence's cache, its query over the whole cache
            for (int i = 0; i < n; i++) {
                int len = dev[i].append(l, s.k(), s.v(), i);
                d.decodeAttention(s.q(), i, sa.H, sa.KV, sa.D, dev[i].keys(l), dev[i].values(l), len, s.o());
            }
        }
    }

    @Override
    public void outputAndRoute(int l, DecoderLayer layer) {
        MoeLayer moe = layer.moe;
        d.matmul(s.o(), n, layer.outputWeight(), s.a());                    // a = o W_o^T: [n, h]
        d.residualNorm(s.x(), layer.attnAlpha, s.a(), null, 1, layer.attnBeta, n, r.c.hiddenSize(), r.postNorm[l],
                (float) r.c.rmsNormEps(), s.x());
        d.matmul(s.x(), n, moe.gate, s.router());                             // router logits [n, E], top k
        if (routeTable != null) { // and the pairs grouped by expert, on the device
            d.routeAndGroup(s.router(), n, moe.E, moe.K, s.expertIds(), s.expertWeights(), routeTable);
        } else {
            d.route(s.router(), n, moe.E, moe.K, s.expertIds(), s.expertWeights());
        }
    }

    @Override
    public void startMoe(int l, DecoderLayer layer) {
        int h = r.c.hiddenSize(), K = layer.moe.K;
        ExpertExecutor executor = r.executor;
        if (r.remote) { // x [n, h], ids and weights [n, K] down; the call out, answered in finishMoe
            if (y == null) { // host rows for every layer of this step (a layer's call ends before the next one's starts)
                y = new float[n * h];
                w = new float[n * K];
                ids = new int[n * K];
                down = new float[n * h + 2 * n * K];
            }
            float[] x = down, y = this.y, w = this.w;
            int[] ids = this.ids;
            Buffer stage = s.qkv(); // free from the attention's end to the next layer's
            if (oneRead && stage.length() >= down.length) { // one blocking read, not three: x | ids | weights
                d.copy(s.x(), 0, stage, 0, (long) n * h);
                d.copy(s.expertIds(), 0, stage, (long) n * h, (long) n * K);
                d.copy(s.expertWeights(), 0, stage, (long) n * h + n * K, (long) n * K);
                d.read(stage, 0, down, 0, down.length);
                for (int i = 0; i < n * K; i++) {
                    ids[i] = Float.floatToRawIntBits(down[n * h + i]); // int32 bits copied as they are
                    w[i] = down[n * h + n * K + i];
                }
            } else {
                d.read(s.x(), 0, x, 0, n * h);
                d.read(s.expertIds(), ids, n * K);
                d.read(s.expertWeights(), 0, w, 0, n * K);
            }
            pending = executor.runAsync(l, x, n, K, ids, w, y, r.calls).thenApply(v -> y); // x: its first n rows
        } else if (routeTable != null) { // from the table outputAndRoute made; an observer reads the route log at the end
            deviceGrouped = true;
            if (executor.observesRouting()) d.copy(s.expertIds(), 0, s.routeLog(), (long) l * n * K, (long) n * K);
            d.groupedExpertsRouted(r.experts[l], routeTable, n, K, s.x(), s.act(), s.pairs());
        } else if (grouped && GroupedExperts.runOnDevice(d, r.experts[l], s.x(), n, K, s.expertIds(), s.act(), s.pairs(),
                GroupedExperts.mode())) { // grouped on the device; an observer reads the route log at the end
            deviceGrouped = true;
            if (executor.observesRouting()) d.copy(s.expertIds(), 0, s.routeLog(), (long) l * n * K, (long) n * K);
        } else if (grouped) { // the ids to the host, one product per chosen expert into the pairs [n*K, h]
            int[] ids = new int[n * K];
            d.read(s.expertIds(), ids, n * K);
            if (executor.observesRouting()) executor.routed(l, ids, n, K);
            DeviceOps.ExpertSet set = r.experts[l];
            GroupedExperts.run(d, new GroupedExperts.Placement() {
                public DeviceOps.ExpertSet set(int e) { return set; }
                public int slot(int e) { return e; }
            }, layer.moe.E, h, r.c.intermediateSize(), s.x(), n, K, ids, s.work(), s.pairs());
        } else { // each row's chosen experts into the pairs [n*K, h]; an observer reads the route log at the end
            if (executor.observesRouting()) d.copy(s.expertIds(), 0, s.routeLog(), (long) l * n * K, (long) n * K);
            d.runExperts(r.experts[l], s.x(), n, K, s.expertIds(), s.act(), s.pairs());
        }
    }

    @Override
    public void finishMoe(int l, DecoderLayer layer) {
        int h = r.c.hiddenSize();
        float eps = (float) r.c.rmsNormEps();
        if (r.remote) { // y [n, h] up; x = RMSNorm_next(a_mlp x + b_mlp y)
            long w0 = System.nanoTime();
            float[] y = await(pending);
            ExpertWaits.add(System.nanoTime() - w0);
            pending = null;
            d.write(s.a(), 0, y, 0, n * h);
            d.residualNorm(s.x(), layer.mlpAlpha, s.a(), null, 1, layer.mlpBeta, n, h, r.nextNorm(l), eps, s.x());
        } else { // x = RMSNorm_next(a_mlp x + b_mlp sum_k w_k pairs_k)
            d.residualNorm(s.x(), layer.mlpAlpha, s.pairs(), s.expertWeights(), layer.moe.K, layer.mlpBeta, n, h,
                    r.nextNorm(l), eps, s.x());
        }
        d.flush(); // the device runs this layer while the host enqueues the next
        if (!r.remote && (!grouped || deviceGrouped) && l == r.layers.length - 1) r.reportRouting(s, n);
    }

    /** Cancels a remote call still in flight (the pass failed midway). */
    void cancel() {
        if (pending != null) pending.cancel(true);
        pending = null;
    }

    /** The result of a remote expert call (bounded: the executor's own deadline ends it). */
    private static float[] await(Future<float[]> f) {
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for remote experts", e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException x) throw x;
            if (e.getCause() instanceof Error x) throw x;
            throw new IllegalStateException("remote experts failed: " + e.getCause(), e.getCause());
        }
    }
}
