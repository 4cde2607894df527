package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.FusedDecode;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * The forward pass with everything on the device ({@link DeviceOps}): {@link ForwardPass} over the device's
 * {@link LayerOps} ({@link DeviceLayerOps}, one launch or more per operation; {@link FusedLayerOps}, the fused decode
 * step), activations, lightning states and KV caches staying on the device within a step and across steps. Per step
 * only the token ids and positions go in and the logits come out; each sequence's state lives in its
 * {@link DeviceState}, synced with the host by {@link SequenceState}. This class holds the device's copies of the
 * model's constants, the step buffers, and chooses the ops and micro-batches of each step.
 *
 * <p>Experts: in-process ({@link ExpertExecutor#local()}) they run on the device from stacked weights; otherwise
 * (expert shards) only each layer's MoE input rows [n, h] and the router's top-k ids and weights [n, K] go down to
 * the host and out to the {@link ExpertExecutor}, and its combined result [n, h] comes back up for the residual.
 * With remote experts the rows are split into two micro-batches that alternate (MegaScale-Infer's ping-pong): one
 * micro-batch's attention runs on the device while the other's experts are computed remotely.
 *
 * <p>Fused step: where the device offers {@link FusedDecode} and the experts are in-process, a step of up to
 * {@link FusedDecode#maxRows()} rows runs in seven launches a layer for the whole batch, the lightning states of
 * every sequence in one {@link StatePool}.
 */
final class ResidentDecoder implements AutoCloseable {
    final ModelConfig c;
    final DeviceOps d;
    final Tensor embed, lmHead;  // [V, h]
    private final ForwardPass pass;
    final DecoderLayer[] layers;
    final Buffer[] inNorm, postNorm; // [L] -> [h]
    final Buffer finalNorm;          // [h]
    final Buffer[] outNorm, decay;   // lightning layers: [H*D], [H]
    final Buffer[] invFreq;          // softmax layers: [rotaryDim / 2]
    final DeviceOps.ExpertSet[] experts; // [L], null with remote experts
    final ExpertExecutor executor;        // the model's experts (routing observers included)
    final boolean remote;                 // experts computed by executor.run, not on the device
    private final boolean pingPong;       // remote experts: two alternating micro-batches
    final java.util.concurrent.ExecutorService calls; // remote expert calls of the micro-batches
    private final List<Buffer> constants = new ArrayList<>();
    final StatePool pool;                 // every sequence's lightning states, by slot
    final FusedDecode fused;              // the fused step's kernels, or null: one launch per operation
    private boolean lastFused;                    // whether the last decode step ran fused
    private long lastLaunches = -1;               // kernel launches of the last decode step (-1: not counted)
    private Scratch s, s2;   // decode steps (s2: the second micro-batch)
    private Scratch ps, ps2; // prefill chunks
    private Buffer psTable;  // a prefill chunk routed on the device: the grouping's table [routeTableLength], or null
    private boolean lastRouted; // whether the last prefill chunk was routed and grouped on the device

    /**
     * -Dlightmesh.prefill.deviceRoute=true: a prefill chunk with in-process experts routed and grouped by expert on the
     * device ({@link DeviceOps#routeAndGroup}, the grouped launches sized for the most tiles), its token ids written
     * without waiting and a fresh sequence's states zeroed there, so that the chunk enqueues with no host sync (the
     * default since the H200 measured 4K prefill 90K -> 113K tokens/s with it, 2026-12-04); false: the router's ids read
     * back each layer and the table written from the host.
     */
    private static volatile boolean deviceRoute = Boolean.parseBoolean(
            System.getProperty("lightmesh.prefill.deviceRoute", "true").trim());

    /** The setting (or what a test chose). */
    static boolean deviceRoute() { return deviceRoute; }

    /** Chooses the prefill routing for later chunks (tests, benchmarks); returns the one before. */
    static boolean deviceRoute(boolean on) {
        boolean before = deviceRoute;
        deviceRoute = on;
        return before;
    }

    private static final System.Logger LOG = System.getLogger(ResidentDecoder.class.getName());

    /** Step buffers for up to {@code rows} rows, and logits for up to {@code logitRows} of them. */
    record Scratch(int rows, Buffer ids, Buffer pos, Buffer x, Buffer a, Buffer qkv, Buffer o, Buffer gate,
                   Buffer q, Buffer k, Buffer v, Buffer router, Buffer expertIds, Buffer expertWeights,
                   Buffer act, Buffer pairs, Buffer logits, Buffer xe, Buffer up, Buffer de, Buffer groupTokens,
                   Buffer groupPairs, Buffer routeLog, Buffer choice) {
        static Scratch of(DeviceOps d, ModelConfig c, int rows, int logitRows) {
            long h = c.hiddenSize(), HD = c.attnDim(), KVD = c.kvDim(), K = c.topK();
            return new Scratch(rows,
                    d.ints(rows),                       // ids [n]
                    d.ints(rows),                       // pos [n]
                    d.floats(rows * h),                 // x [n, h]
                    d.floats(rows * h),                 // a [n, h]: attention output
                    d.floats(rows * 3 * HD),            // qkv [n, H, 3D]
                    d.floats(rows * HD),                // o [n, H*D]
                    d.floats(rows * HD),                // gate [n, H*D]
                    d.floats(rows * HD),                // q [n, H, D]
                    d.floats(rows * KVD),               // k [n, KV, D]
                    d.floats(rows * KVD),               // v [n, KV, D]
                    d.floats(rows * c.numExperts()),    // router logits [n, E]
                    d.ints(rows * K),                   // expert ids [n, K]
                    d.floats(rows * K),                 // expert weights [n, K]
                    d.floats(rows * K * c.intermediateSize()), // act [n*K, I]
                    d.floats(rows * K * h),             // expert outputs [n*K, h]
                    d.floats(logitRows * (long) c.vocabSize()), // logits [logitRows, V]
                    d.floats(rows * h),                 // xe [n, h]: one expert's rows, gathered (prefill)
                    d.floats(rows * (long) c.intermediateSize()), // up [n, I]
                    d.floats(rows * h),                 // de [n, h]: one expert's outputs
                    d.ints(rows * K),                   // token row of each pair, grouped by expert
                    d.ints(rows * K),                   // pair index of each pair, grouped by expert
                    d.ints(c.numLayers() * rows * K),   // routeLog [L, n, K]: the step's expert ids, for observers
                    d.ints(logitRows));                 // choice [logitRows]: each logit row's argmax (greedy decode)
        }

        GroupedExperts.Work work() { return new GroupedExperts.Work(groupTokens, groupPairs, xe, act, up, de); }

        void close() {
            for (Buffer b : List.of(ids, pos, x, a, qkv, o, gate, q, k, v, router, expertIds, expertWeights, act, pairs,
                    logits, xe, up, de, groupTokens, groupPairs, routeLog, choice)) b.close();
        }
    }

    /**
     * @param executor the model's experts: computed here from {@code executor.local()}'s weights when it hosts every
     *                 expert, else by {@code executor.run} (remote shards)
     * @param pingPong with remote experts, split steps and chunks into two alternating micro-batches
     * @param fusedSteps decode steps on the device's fused kernels where they fit (else always per operation)
     */
    ResidentDecoder(ModelConfig c, DeviceOps d, Tensor embed, Tensor lmHead, float[] finalNorm, ForwardPass pass,
                    ExpertExecutor executor, boolean pingPong, boolean fusedSteps) {
        this.c = c;
        this.d = d;
        this.embed = embed;
        this.lmHead = lmHead;
        this.pass = pass;
        this.layers = pass.layers();
        this.executor = executor;
        LocalExperts local = hostsAll(c, executor) ? executor.local() : null;
        this.remote = local == null;
        this.pingPong = remote && pingPong;
        this.calls = remote ? java.util.concurrent.Executors.newThreadPerTaskExecutor(
                Thread.ofVirtual().name("lightmesh-expert-call-", 0).factory()) : null;
        int L = layers.length;
        inNorm = new Buffer[L];
        postNorm = new Buffer[L];
        outNorm = new Buffer[L];
        decay = new Buffer[L];
        invFreq = new Buffer[L];
        experts = new DeviceOps.ExpertSet[L];
        List<Tensor> weights = new ArrayList<>(List.of(embed, lmHead));
        for (int l = 0; l < L; l++) {
            DecoderLayer layer = layers[l];
            inNorm[l] = constant(layer.inputNorm);
            postNorm[l] = constant(layer.postNorm);
            if (layer.lightning != null) {
                LightningAttention la = layer.lightning;
                outNorm[l] = constant(la.normW);
                decay[l] = constant(la.decay);
                weights.addAll(List.of(la.wQkv, la.wGate, la.wOut));
            } else {
                SoftmaxAttention sa = layer.softmax;
                invFreq[l] = constant(sa.rope.invFreq);
                weights.addAll(List.of(sa.wq, sa.wk, sa.wv, sa.wo));
            }
            weights.add(layer.moe.gate);
            if (local != null) experts[l] = d.experts(local.w1[l], local.w3[l], local.w2[l]);
        }
        this.finalNorm = constant(finalNorm);
        d.preload(weights);
        this.pool = new StatePool(d, c);
        FusedDecode f = remote || !fusedSteps ? null : d.fused();
        this.fused = f != null && f.takes(weights.toArray(Tensor[]::new)) && fusedFits(c) ? f : null;
        if (deviceRoute && !remote) { // the route kernels built and checked now, and the form in the log
            LOG.log(System.Logger.Level.INFO, "prefill routing: " + (routesOnDevice()
                    ? "on the device (-Dlightmesh.prefill.deviceRoute=true: no host sync per layer)"
                    : "host table (-Dlightmesh.prefill.deviceRoute=true, but the device has no route kernels)"));
        }
    }

    /** Whether a prefill chunk with in-process experts is routed on the device: asked for, and the kernels built. */
    private boolean routesOnDevice() {
        return deviceRoute && !remote && d.routesOnDevice(c.numExperts(), c.topK());
    }

    /** Whether the last prefill chunk was routed and grouped on the device (benchmarks, tests). */
    synchronized boolean lastPrefillRouted() { return lastRouted; }

    /** Shapes the fused kernels take beyond {@link #supports}: the router's top k in its tail, E <= 64. */
    private static boolean fusedFits(ModelConfig c) {
        return c.numExperts() <= 64 && c.headDim() <= 128 && c.numHeads() / c.numKvHeads() <= 16;
    }

    /** Whether the last decode step ran as the fused step (tests, logs). */
    synchronized boolean lastStepFused() { return lastFused; }

    /** Kernel launches of the last decode step, or -1 where the device does not count them. */
    synchronized long lastStepLaunches() { return lastLaunches; }

    /** The device's per-kernel times since the last call, or null where it does not profile them. */
    DeviceOps.KernelTimes kernelTimes() { return d.kernelTimes(); }

    String decodeKernelSet() { return d.decodeKernelSet(); }

    /**
     * The device forms this decoder runs, as a worker reports them: "prefill routing on the device|host table|off
     * (remote experts); decode kernels ...; decode products ...".
     */
    String kernelForms() {
        String routing = remote ? "off (remote experts)"
                : routesOnDevice() ? "on the device" : "host table";
        return "prefill routing " + routing + "; decode kernels " + d.decodeKernelSet() + "; decode products "
                + d.decodeProducts() + "; greedy tokens by argmax on the device"
                + (fused == null ? "; decode steps per operation" : "; decode steps fused");
    }

    /** Whether {@code experts} are in-process and host every (layer, expert): the device then computes them itself. */
    static boolean hostsAll(ModelConfig c, ExpertExecutor experts) {
        LocalExperts local = experts.local();
        if (local == null) return false;
        for (int l = 0; l < c.numLayers(); l++) {
            for (int e = 0; e < c.numExperts(); e++) if (!local.hosts(l, e)) return false;
        }
        return true;
    }

    /** Whether this model can run on the device: shapes the kernels take (experts local or remote alike). */
    static boolean supports(ModelConfig c) {
        int G = c.numHeads() / c.numKvHeads();
        return c.numHeads() % c.numKvHeads() == 0 && G <= 16 && c.headDim() <= 128 && c.numExperts() <= 64;
    }

    private Buffer constant(float[] values) {
        Buffer b = d.upload(values);
        constants.add(b);
        return b;
    }

    /**
     * One decode step: token i is appended to states.get(i) (ids, positions checked by the caller). Every row's argmax
     * is chosen on the device; the logits [V] of row i come back only where {@code wanted[i]}.
     */
    synchronized DecodeResult decode(List<SequenceState> states, int[] tokens, boolean[] wanted) {
        int n = tokens.length;
        DeviceState[] dev = new DeviceState[n];
        int[] pos = new int[n];
        for (int i = 0; i < n; i++) {
            dev[i] = states.get(i).onDevice(d, pool);
            pos[i] = states.get(i).position();
        }
        long before = d.launches();
        boolean fusedStep = fusable(dev, pos, n);
        int nA = fusedStep || !pingPong || n < 2 ? n : (n + 1) / 2; // micro-batches: rows [0, nA) and [nA, n)
        s = grown(s, nA, nA);
        List<Part> parts = new ArrayList<>(List.of(new Part(fusedStep ? new FusedLayerOps(this, s, tokens, pos, dev)
                : DeviceLayerOps.decode(this, s, tokens, pos, dev, 0, nA), s, 0, nA)));
        if (nA < n) {
            s2 = grown(s2, n - nA, n - nA);
            parts.add(new Part(DeviceLayerOps.decode(this, s2, tokens, pos, dev, nA, n - nA), s2, nA, n - nA));
        }
        DecodeResult out;
        if (fusedStep) {
            // the fused kernels' step inputs (ids, positions, slots) and tail counters are one set per device, shared
            // by every model on it: a step is enqueued whole before another model's begins (the queue is in order)
            synchronized (fused) { out = step(parts, wanted); }
        } else {
            out = step(parts, wanted);
        }
        for (SequenceState st : states) st.advance(1);
        lastFused = fusedStep;
        lastLaunches = before < 0 ? -1 : d.launches() - before;
        return out;
    }

    /**
     * Whether this step can run fused: kernels present, few enough rows, and every softmax cache holding exactly the
     * positions before the step's (the kernels append at row = position).
     */
    private boolean fusable(DeviceState[] dev, int[] pos, int n) {
        if (fused == null || n > fused.maxRows()) return false;
        for (int l = 0; l < layers.length; l++) {
            if (layers[l].softmax == null) continue;
            for (int i = 0; i < n; i++) if (dev[i].kvLength(l) != pos[i]) return false;
        }
        return true;
    }

    /** The scratch {@code old} if it holds {@code rows} rows and {@code logitRows} logit rows, else a larger one. */
    private Scratch grown(Scratch old, int rows, int logitRows) {
        if (old != null && old.rows >= rows && old.logits.length() >= (long) Math.max(1, logitRows) * c.vocabSize()) return old;
        if (old != null) old.close();
        int r = Math.max(rows, old == null ? 1 : 2 * old.rows);
        return Scratch.of(d, c, r, Math.max(Math.max(1, logitRows), old == null ? 1 : (int) (old.logits.length() / c.vocabSize())));
    }

    /** Below this many rows a prefill chunk with remote experts is not split into micro-batches. */
    static final int PREFILL_SPLIT_MIN_ROWS = 32;

    /**
     * Prefill of one sequence on the device: {@code tokens} (at most one chunk) run after what {@code st} holds, the
     * same math as the host forward pass, the lightning layers in their recurrent form over the chunk
     * ({@link DeviceOps#lightningScan}), each softmax layer's queries attending over the grown cache
     * ({@link DeviceOps#causalAttention}). With remote experts and ping-pong, the chunk's first and second halves are
     * the two micro-batches (the second half's attention of layer l follows the first half's, as causality needs).
     * Returns the logits of rows {@code logitRows} of the chunk (row r's predict token r + 1).
     */
    synchronized float[][] prefill(SequenceState st, int[] tokens, int[] logitRows) {
        int n = tokens.length, m = logitRows.length;
        for (int r : logitRows) if (r < 0 || r >= n) throw new IllegalArgumentException("logit row " + r + " outside 0.." + (n - 1));
        DeviceState dev = st.onDevice(d, pool);
        int start = st.position();
        int nA = pingPong && n >= PREFILL_SPLIT_MIN_ROWS ? (n + 1) / 2 : n;
        ps = grown(ps, nA, m);
        boolean grouped = !remote && n > GROUP_MIN_ROWS;
        Buffer table = null;
        if (grouped && nA == n && GroupedExperts.mode() != GroupedExperts.Mode.PER_EXPERT
                && routesOnDevice()) { // (per-expert: the form asked for, to compare)
            long need = d.routeTableLength(n, c.numExperts(), c.topK());
            if (psTable == null || psTable.length() < need) { // grown for the longest chunk seen
                if (psTable != null) psTable.close();
                psTable = d.ints(need);
            }
            table = psTable;
        }
        lastRouted = table != null;
        List<Part> parts = new ArrayList<>();
        parts.add(new Part(DeviceLayerOps.prefill(this, ps, tokens, start, dev, 0, nA, grouped, table), ps, 0, nA));
        if (nA < n) {
            ps2 = grown(ps2, n - nA, m);
            parts.add(new Part(DeviceLayerOps.prefill(this, ps2, tokens, start, dev, nA, n - nA, grouped, null), ps2, nA,
                    n - nA));
        }
        float[][] out = run(parts, logitRows);
        st.advance(n);
        return out;
    }

    /** One micro-batch of a step: its ops, its buffers, and its rows [from, from + n) of the step. */
    private record Part(LayerOps ops, Scratch s, int from, int n) {}

    /**
     * The forward pass over the micro-batches (remote expert calls still in flight when it fails are cancelled), then
     * the LM head on rows {@code logitRows} of the final-normed x: logits [m][V], the only data that comes back.
     */
    private float[][] run(List<Part> parts, int[] logitRows) {
        forward(parts);
        int h = c.hiddenSize();
        float[][] out = new float[logitRows.length][];
        for (Part p : parts) {
            List<Integer> mine = new ArrayList<>();
            for (int i = 0; i < logitRows.length; i++) if (logitRows[i] >= p.from && logitRows[i] < p.from + p.n) mine.add(i);
            boolean all = mine.size() == p.n; // every row in order (decode): x as it is; else the wanted rows into a
            for (int j = 0; j < mine.size(); j++) all &= logitRows[mine.get(j)] == p.from + j;
            for (int j = 0; j < mine.size() && !all; j++) {
                d.copy(p.s.x, (long) (logitRows[mine.get(j)] - p.from) * h, p.s.a, (long) j * h, h);
            }
            float[][] got = logits(p.s, all ? p.s.x : p.s.a, mine.size());
            for (int j = 0; j < mine.size(); j++) out[mine.get(j)] = got[j];
        }
        return out;
    }

    /** The forward pass over the micro-batches; remote expert calls still in flight when it fails are cancelled. */
    private void forward(List<Part> parts) {
        try {
            pass.run(parts.stream().map(Part::ops).toList());
        } finally {
            for (Part p : parts) if (p.ops() instanceof DeviceLayerOps dp) dp.cancel();
        }
    }

    /**
     * A decode step's forward pass over its micro-batches, the LM head on every row, each row's argmax on the device
     * and one read of the B ints; a row's logits read back only where it wants them (at V = 200,064, 0.8 MB a row).
     */
    private DecodeResult step(List<Part> parts, boolean[] wanted) {
        forward(parts);
        int V = c.vocabSize(), n = wanted.length;
        int[] argmax = new int[n];
        float[][] logits = new float[n][];
        for (Part p : parts) {
            d.matmul(p.s.x, p.n, lmHead, p.s.logits);
            d.argmaxRows(p.s.logits, p.n, V, p.s.choice);
            for (int i = 0; i < p.n; i++) { // only the rows that want them, each straight into its own array
                if (!wanted[p.from + i]) continue;
                logits[p.from + i] = new float[V];
                d.read(p.s.logits, (long) i * V, logits[p.from + i], 0, V);
            }
            int[] got = new int[p.n];
            d.read(p.s.choice, got, p.n);
            System.arraycopy(got, 0, argmax, p.from, p.n);
        }
        return new DecodeResult(argmax, logits);
    }

    /** The LM head on the first m rows of x (final-normed) into s.logits, read back: [m][V]. */
    private float[][] logits(Scratch s, Buffer x, int m) {
        int V = c.vocabSize();
        float[][] out = new float[m][];
        if (m == 0) return out;
        d.matmul(x, m, lmHead, s.logits);
        float[] all = new float[m * V];
        d.read(s.logits, 0, all, 0, m * V);
        for (int i = 0; i < m; i++) out[i] = java.util.Arrays.copyOfRange(all, i * V, (i + 1) * V);
        return out;
    }

    /** Tells a routing observer the ids of a step's layers, logged on the device into s.routeLog (one read). */
    void reportRouting(Scratch s, int n) {
        if (!executor.observesRouting() || n == 0) return;
        int K = c.topK(), L = layers.length;
        int[] all = new int[L * n * K];
        d.read(s.routeLog, all, L * n * K);
        for (int l = 0; l < L; l++) executor.routed(l, java.util.Arrays.copyOfRange(all, l * n * K, (l + 1) * n * K), n, K);
    }

    /** Layer l's MoE residual is followed by layer l+1's input norm, the last layer's by the final norm. */
    Buffer nextNorm(int l) { return l + 1 < layers.length ? inNorm[l + 1] : finalNorm; }

    /** Above this many rows, a chunk's experts run grouped (one product per expert) rather than 8 rows a pass. */
    static final int GROUP_MIN_ROWS = 8;

    @Override
    public synchronized void close() {
        for (Scratch x : new Scratch[]{s, s2, ps, ps2}) if (x != null) x.close();
        s = s2 = ps = ps2 = null;
        if (psTable != null) psTable.close();
        psTable = null;
        if (calls != null) calls.shutdownNow();
        pool.close();
        for (Buffer b : constants) b.close();
        constants.clear();
    }
}
