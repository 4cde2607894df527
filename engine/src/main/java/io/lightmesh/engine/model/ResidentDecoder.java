package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * The decode step with everything on the device ({@link DeviceOps}): the same math as {@link DecoderLayer},
 * {@link LightningAttention}, {@link SoftmaxAttention}, {@link MoeLayer} and {@link LocalExperts}, but activations,
 * lightning states and KV caches stay on the device within the step and across steps. Per step only the token ids
 * and positions go in and the logits come out; each sequence's state lives in its {@link DeviceState}, synced with
 * the host by {@link SequenceState}.
 *
 * <p>Postnorm makes the residual stream the normalised x, so each block's residual and the next norm are one fused
 * operation, and the layer loop carries only x [n, h].
 *
 * <p>Experts: in-process ({@link ExpertExecutor#local()}) they run on the device from stacked weights; otherwise
 * (expert shards) only each layer's MoE input rows [n, h] and the router's top-k ids and weights [n, K] go down to
 * the host and out to the {@link ExpertExecutor}, and its combined result [n, h] comes back up for the residual.
 * With remote experts the rows are split into two micro-batches that alternate (MegaScale-Infer's ping-pong): one
 * micro-batch's attention runs on the device while the other's experts are computed remotely.
 */
final class ResidentDecoder implements AutoCloseable {
    private final ModelConfig c;
    private final DeviceOps d;
    private final Tensor embed, lmHead;  // [V, h]
    private final DecoderLayer[] layers;
    private final Buffer[] inNorm, postNorm; // [L] -> [h]
    private final Buffer finalNorm;          // [h]
    private final Buffer[] outNorm, decay;   // lightning layers: [H*D], [H]
    private final Buffer[] invFreq;          // softmax layers: [rotaryDim / 2]
    private final DeviceOps.ExpertSet[] experts; // [L], null with remote experts
    private final ExpertExecutor executor;        // the model's experts (routing observers included)
    private final boolean remote;                 // experts computed by executor.run, not on the device
    private final boolean pingPong;               // remote experts: two alternating micro-batches
    private final java.util.concurrent.ExecutorService calls; // remote expert calls of the micro-batches
    private final List<Buffer> constants = new ArrayList<>();
    private Scratch s, s2;   // decode steps (s2: the second micro-batch)
    private Scratch ps, ps2; // prefill chunks

    /** Step buffers for up to {@code rows} rows, and logits for up to {@code logitRows} of them. */
    private record Scratch(int rows, Buffer ids, Buffer pos, Buffer x, Buffer a, Buffer qkv, Buffer o, Buffer gate,
                           Buffer q, Buffer k, Buffer v, Buffer router, Buffer expertIds, Buffer expertWeights,
                           Buffer act, Buffer pairs, Buffer logits, Buffer xe, Buffer up, Buffer de, Buffer groupTokens,
                           Buffer groupPairs, Buffer routeLog) {
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
                    d.ints(c.numLayers() * rows * K));  // routeLog [L, n, K]: the step's expert ids, for observers
        }

        GroupedExperts.Work work() { return new GroupedExperts.Work(groupTokens, groupPairs, xe, act, up, de); }

        void close() {
            for (Buffer b : List.of(ids, pos, x, a, qkv, o, gate, q, k, v, router, expertIds, expertWeights, act, pairs,
                    logits, xe, up, de, groupTokens, groupPairs, routeLog)) b.close();
        }
    }

    /**
     * @param executor the model's experts: computed here from {@code executor.local()}'s weights when it hosts every
     *                 expert, else by {@code executor.run} (remote shards)
     * @param pingPong with remote experts, split steps and chunks into two alternating micro-batches
     */
    ResidentDecoder(ModelConfig c, DeviceOps d, Tensor embed, Tensor lmHead, float[] finalNorm, DecoderLayer[] layers,
                    ExpertExecutor executor, boolean pingPong) {
        this.c = c;
        this.d = d;
        this.embed = embed;
        this.lmHead = lmHead;
        this.layers = layers;
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

    /** One decode step: token i is appended to states.get(i); returns logits [B][V]. */
    synchronized float[][] decode(List<SequenceState> states, int[] tokens) {
        int n = tokens.length;
        for (SequenceState st : states) {
            if ((long) st.position() + 1 > c.maxPositions()) {
                throw new IllegalArgumentException("sequence would exceed max_position_embeddings " + c.maxPositions());
            }
        }
        for (int t : tokens) {
            if (t < 0 || t >= c.vocabSize()) {
                throw new IllegalArgumentException("token id " + t + " outside the vocabulary 0.." + (c.vocabSize() - 1));
            }
        }
        DeviceState[] dev = new DeviceState[n];
        int[] pos = new int[n];
        for (int i = 0; i < n; i++) {
            dev[i] = states.get(i).onDevice(d);
            pos[i] = states.get(i).position();
        }
        // micro-batches: rows [0, nA) and [nA, n) when two alternate, else one of all rows
        int nA = pingPong && n >= 2 ? (n + 1) / 2 : n;
        s = grown(s, nA, nA);
        List<Part> parts = new ArrayList<>(List.of(new DecodePart(s, 0, nA, dev)));
        if (nA < n) {
            s2 = grown(s2, n - nA, n - nA);
            parts.add(new DecodePart(s2, nA, n - nA, dev));
        }
        // token ids and positions in; x = RMSNorm_in0(embed[ids]): [n, h]
        for (Part p : parts) {
            embedRows(p.s(), java.util.Arrays.copyOfRange(tokens, p.from(), p.from() + p.n()),
                    java.util.Arrays.copyOfRange(pos, p.from(), p.from() + p.n()), p.n());
        }
        layers(parts, false);
        // LM head: logits [n, V], the only data that comes back
        float[][] out = new float[n][];
        for (Part p : parts) {
            float[][] got = logits(p.s(), p.s().x, p.n());
            System.arraycopy(got, 0, out, p.from(), p.n());
        }
        for (SequenceState st : states) st.advance(1);
        return out;
    }

    /** The scratch {@code old} if it holds {@code rows} rows and {@code logitRows} logit rows, else a larger one. */
    private Scratch grown(Scratch old, int rows, int logitRows) {
        if (old != null && old.rows >= rows && old.logits.length() >= (long) Math.max(1, logitRows) * c.vocabSize()) return old;
        if (old != null) old.close();
        int r = Math.max(rows, old == null ? 1 : 2 * old.rows);
        return Scratch.of(d, c, r, Math.max(Math.max(1, logitRows), old == null ? 1 : (int) (old.logits.length() / c.vocabSize())));
    }

    /**
     * Rows of a step that run through the layers together: their scratch, where they start in the step, how many, and
     * their attention of layer l (s.x [n, h] -> s.a [n, h], each row's state advanced).
     */
    private interface Part {
        Scratch s();

        int from();

        int n();

        void attention(int l);
    }

    /** Decode rows [from, from + n): one token of each of their sequences. */
    private final class DecodePart implements Part {
        private final Scratch s;
        private final int from, n;
        private final DeviceState[] dev;

        DecodePart(Scratch s, int from, int n, DeviceState[] all) {
            this.s = s;
            this.from = from;
            this.n = n;
            this.dev = java.util.Arrays.copyOfRange(all, from, from + n);
        }

        public Scratch s() { return s; }
        public int from() { return from; }
        public int n() { return n; }

        public void attention(int l) {
            DecoderLayer layer = layers[l];
            if (layer.lightning != null) lightning(l, layer.lightning, s, dev, n);
            else softmax(l, layer.softmax, s, dev, n);
        }
    }

    /** Prefill rows [from, from + n) of a chunk of one sequence, after the rows before them (same layer) ran. */
    private final class PrefillPart implements Part {
        private final Scratch s;
        private final int from, n;
        private final DeviceState dev;

        PrefillPart(Scratch s, int from, int n, DeviceState dev) {
            this.s = s;
            this.from = from;
            this.n = n;
            this.dev = dev;
        }

        public Scratch s() { return s; }
        public int from() { return from; }
        public int n() { return n; }

        public void attention(int l) {
            DecoderLayer layer = layers[l];
            if (layer.lightning != null) {
                LightningAttention la = layer.lightning;
                int HD = la.H * la.D;
                d.matmul(s.x, n, la.wQkv, s.qkv);                     // qkv = SiLU(x W_qkv^T): [n, H, 3D]
                d.silu(s.qkv, (long) n * 3 * HD);
                d.lightningScan(s.qkv, n, la.H, la.D, decay[l], dev.lightning(l), s.o); // o [n, H*D], S advanced n
                d.matmul(s.x, n, la.wGate, s.gate);
                d.normGate(s.o, n, HD, outNorm[l], (float) ModelConfig.LIGHTNING_NORM_EPS, s.gate);
                d.matmul(s.o, n, la.wOut, s.a);
            } else {
                SoftmaxAttention sa = layer.softmax;
                d.matmul(s.x, n, sa.wq, s.q);
                d.matmul(s.x, n, sa.wk, s.k);
                d.matmul(s.x, n, sa.wv, s.v);
                d.rope(s.q, n, sa.H, sa.D, invFreq[l], sa.rope.rotaryDim / 2, s.pos);
                d.rope(s.k, n, sa.KV, sa.D, invFreq[l], sa.rope.rotaryDim / 2, s.pos);
                int len = dev.appendRows(l, s.k, s.v, 0, n);               // the cache now holds these rows
                // causal: row t sees positions <= its own
                d.causalAttention(s.q, n, sa.H, sa.KV, sa.D, dev.keys(l), dev.values(l), len - n + 1, s.o);
                d.matmul(s.o, n, sa.wo, s.a);
            }
        }
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
        int n = tokens.length, h = c.hiddenSize(), m = logitRows.length;
        for (int r : logitRows) if (r < 0 || r >= n) throw new IllegalArgumentException("logit row " + r + " outside 0.." + (n - 1));
        DeviceState dev = st.onDevice(d);
        int start = st.position();
        int nA = pingPong && n >= PREFILL_SPLIT_MIN_ROWS ? (n + 1) / 2 : n;
        ps = grown(ps, nA, m);
        List<Part> parts = new ArrayList<>(List.of(new PrefillPart(ps, 0, nA, dev)));
        if (nA < n) {
            ps2 = grown(ps2, n - nA, m);
            parts.add(new PrefillPart(ps2, nA, n - nA, dev));
        }
        // x = RMSNorm_in0(embed[ids]): [n, h]
        for (Part p : parts) {
            int[] pos = new int[p.n()];
            for (int t = 0; t < p.n(); t++) pos[t] = start + p.from() + t;
            embedRows(p.s(), java.util.Arrays.copyOfRange(tokens, p.from(), p.from() + p.n()), pos, p.n());
        }
        layers(parts, !remote && n > GROUP_MIN_ROWS);
        // the wanted rows of the final-normed x, then the LM head on those alone: logits [m, V]
        float[][] out = new float[m][];
        for (Part p : parts) {
            List<Integer> mine = new ArrayList<>();
            for (int i = 0; i < m; i++) if (logitRows[i] >= p.from() && logitRows[i] < p.from() + p.n()) mine.add(i);
            for (int j = 0; j < mine.size(); j++) {
                d.copy(p.s().x, (long) (logitRows[mine.get(j)] - p.from()) * h, p.s().a, (long) j * h, h);
            }
            float[][] got = logits(p.s(), p.s().a, mine.size());
            for (int j = 0; j < mine.size(); j++) out[mine.get(j)] = got[j];
        }
        st.advance(n);
        return out;
    }

    /**
     * Every layer over the parts: attention, then the MoE block. One part, or local experts: in order. Two parts with
     * remote experts: part A's experts are computed remotely while part B's attention of the same layer runs on the
     * device, and B's while A's attention of the next layer runs (the remote calls on {@link #calls}).
     */
    private void layers(List<Part> parts, boolean grouped) {
        int L = layers.length;
        if (!remote) {
            for (int l = 0; l < L; l++) {
                for (Part p : parts) {
                    p.attention(l);
                    block(l, layers[l], p.s(), p.n(), grouped);
                }
            }
            for (Part p : parts) reportRouting(p.s(), p.n(), grouped);
            return;
        }
        List<java.util.concurrent.Future<float[]>> pending = new ArrayList<>(java.util.Collections.nCopies(parts.size(), null));
        try {
            for (int l = 0; l < L; l++) {
                for (int i = 0; i < parts.size(); i++) {
                    Part p = parts.get(i);
                    if (l > 0) finishRemote(l - 1, p, await(pending.set(i, null)));
                    p.attention(l);
                    pending.set(i, startRemote(l, p));
                }
            }
            for (int i = 0; i < parts.size(); i++) finishRemote(L - 1, parts.get(i), await(pending.set(i, null)));
        } finally {
            for (var f : pending) if (f != null) f.cancel(true);
        }
    }

    /**
     * The start of layer l's MoE block with remote experts: x = RMSNorm_post(a_attn x + b_attn a), the router's top-k
     * on the device; then x [n, h], ids and weights [n, K] down to the host and the call out to the executor.
     */
    private java.util.concurrent.Future<float[]> startRemote(int l, Part p) {
        DecoderLayer layer = layers[l];
        MoeLayer moe = layer.moe;
        Scratch s = p.s();
        int n = p.n(), h = c.hiddenSize(), K = moe.K;
        d.residualNorm(s.x, layer.attnAlpha, s.a, null, 1, layer.attnBeta, n, h, postNorm[l], (float) c.rmsNormEps(), s.x);
        d.matmul(s.x, n, moe.gate, s.router);
        d.route(s.router, n, moe.E, K, s.expertIds, s.expertWeights);
        float[] x = new float[n * h], w = new float[n * K];
        int[] ids = new int[n * K];
        d.read(s.x, 0, x, 0, n * h);
        d.read(s.expertIds, ids, n * K);
        d.read(s.expertWeights, 0, w, 0, n * K);
        float[] out = new float[n * h];
        return executor.runAsync(l, x, n, K, ids, w, out, calls).thenApply(v -> out);
    }

    /** The end of layer l's MoE block: the combined experts [n, h] up; x = RMSNorm_next(a_mlp x + b_mlp y). */
    private void finishRemote(int l, Part p, float[] combined) {
        DecoderLayer layer = layers[l];
        Scratch s = p.s();
        int n = p.n(), h = c.hiddenSize();
        d.write(s.a, 0, combined, 0, n * h);
        d.residualNorm(s.x, layer.mlpAlpha, s.a, null, 1, layer.mlpBeta, n, h,
                l + 1 < layers.length ? inNorm[l + 1] : finalNorm, (float) c.rmsNormEps(), s.x);
        d.flush();
    }

    /** The result of a remote expert call (bounded: the executor's own deadline ends it). */
    private static float[] await(java.util.concurrent.Future<float[]> f) {
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for remote experts", e);
        } catch (java.util.concurrent.ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            if (e.getCause() instanceof Error r) throw r;
            throw new IllegalStateException("remote experts failed: " + e.getCause(), e.getCause());
        }
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

    /** Token ids and positions in; s.x = RMSNorm_in0(embed[ids]): [n, h]. */
    private void embedRows(Scratch s, int[] tokens, int[] pos, int n) {
        d.write(s.ids, tokens, n);
        d.write(s.pos, pos, n);
        d.embed(embed, s.ids, n, s.x);
        d.rmsNorm(s.x, n, c.hiddenSize(), inNorm[0], (float) c.rmsNormEps(), s.x);
    }

    /**
     * The rest of layer l after its attention wrote s.a [n, h], experts on the device: x = RMSNorm_post(a_attn x +
     * b_attn a); the MoE (router top-k, each chosen expert's SwiGLU into the pairs [n*K, h], {@code grouped} by expert
     * for a prefill chunk); then x = RMSNorm_next(a_mlp x + b_mlp sum_k w_k pairs_k) with the next layer's input norm
     * or the final one. A routing observer gets the ids: grouped, at once (they came to the host anyway); else from
     * the step's route log, read once at the end ({@link #reportRouting}).
     */
    private void block(int l, DecoderLayer layer, Scratch s, int n, boolean grouped) {
        int h = c.hiddenSize();
        float eps = (float) c.rmsNormEps();
        d.residualNorm(s.x, layer.attnAlpha, s.a, null, 1, layer.attnBeta, n, h, postNorm[l], eps, s.x);
        MoeLayer moe = layer.moe;
        d.matmul(s.x, n, moe.gate, s.router);
        d.route(s.router, n, moe.E, moe.K, s.expertIds, s.expertWeights);
        if (grouped) {
            int[] ids = new int[n * moe.K];
            d.read(s.expertIds, ids, n * moe.K);
            if (executor.observesRouting()) executor.routed(l, ids, n, moe.K);
            DeviceOps.ExpertSet set = experts[l];
            GroupedExperts.run(d, new GroupedExperts.Placement() {
                public DeviceOps.ExpertSet set(int e) { return set; }
                public int slot(int e) { return e; }
            }, moe.E, h, c.intermediateSize(), s.x, n, moe.K, ids, s.work(), s.pairs);
        } else {
            if (executor.observesRouting()) d.copy(s.expertIds, 0, s.routeLog, (long) l * n * moe.K, (long) n * moe.K);
            d.runExperts(experts[l], s.x, n, moe.K, s.expertIds, s.act, s.pairs);
        }
        d.residualNorm(s.x, layer.mlpAlpha, s.pairs, s.expertWeights, moe.K, layer.mlpBeta, n, h,
                l + 1 < layers.length ? inNorm[l + 1] : finalNorm, eps, s.x);
        d.flush(); // the device runs this layer while the host enqueues the next
    }

    /** Tells a routing observer the ids of a step's layers, logged on the device by {@link #block} (one read). */
    private void reportRouting(Scratch s, int n, boolean grouped) {
        if (grouped || !executor.observesRouting() || n == 0) return;
        int K = c.topK(), L = layers.length;
        int[] all = new int[L * n * K];
        d.read(s.routeLog, all, L * n * K);
        for (int l = 0; l < L; l++) executor.routed(l, java.util.Arrays.copyOfRange(all, l * n * K, (l + 1) * n * K), n, K);
    }

    /** Above this many rows, a chunk's experts run grouped (one product per expert) rather than 8 rows a pass. */
    static final int GROUP_MIN_ROWS = 8;

    /** Lightning attention of layer l: s.x [n, h] -> s.a [n, h], each sequence's S advanced one step. */
    private void lightning(int l, LightningAttention la, Scratch s, DeviceState[] dev, int n) {
        int HD = la.H * la.D;
        // qkv = SiLU(x W_qkv^T): [n, H, 3D]
        d.matmul(s.x, n, la.wQkv, s.qkv);
        d.silu(s.qkv, (long) n * 3 * HD);
        // S = exp(-lambda) S + k^T v; o = q S, per sequence: o [n, H*D]
        for (int i = 0; i < n; i++) d.lightningStep(s.qkv, i, la.H, la.D, decay[l], dev[i].lightning(l), s.o);
        // o = RMSNorm_1e-6(o) * sigmoid(x W_gate^T); a = o W_out^T
        d.matmul(s.x, n, la.wGate, s.gate);
        d.normGate(s.o, n, HD, outNorm[l], (float) ModelConfig.LIGHTNING_NORM_EPS, s.gate);
        d.matmul(s.o, n, la.wOut, s.a);
    }

    /** Softmax attention of layer l: s.x [n, h] -> s.a [n, h], each sequence's cache one row longer. */
    private void softmax(int l, SoftmaxAttention sa, Scratch s, DeviceState[] dev, int n) {
        // q [n, H, D], k and v [n, KV, D], RoPE at each row's position
        d.matmul(s.x, n, sa.wq, s.q);
        d.matmul(s.x, n, sa.wk, s.k);
        d.matmul(s.x, n, sa.wv, s.v);
        d.rope(s.q, n, sa.H, sa.D, invFreq[l], sa.rope.rotaryDim / 2, s.pos);
        d.rope(s.k, n, sa.KV, sa.D, invFreq[l], sa.rope.rotaryDim / 2, s.pos);
        // append k, v to each sequence's cache; its query attends over the whole cache: o [n, H*D]
        for (int i = 0; i < n; i++) {
            int len = dev[i].append(l, s.k, s.v, i);
            d.decodeAttention(s.q, i, sa.H, sa.KV, sa.D, dev[i].keys(l), dev[i].values(l), len, s.o);
        }
        // a = o W_o^T
        d.matmul(s.o, n, sa.wo, s.a);
    }

    @Override
    public synchronized void close() {
        for (Scratch x : new Scratch[]{s, s2, ps, ps2}) if (x != null) x.close();
        s = s2 = ps = ps2 = null;
        if (calls != null) calls.shutdownNow();
        for (Buffer b : constants) b.close();
        constants.clear();
    }
}
