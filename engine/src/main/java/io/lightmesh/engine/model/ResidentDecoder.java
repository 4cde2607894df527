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
    private final DeviceOps.ExpertSet[] experts; // [L]
    private final List<Buffer> constants = new ArrayList<>();
    private Scratch s;   // decode steps
    private Scratch ps;  // prefill chunks

    /** Step buffers for up to {@code rows} rows, and logits for up to {@code logitRows} of them. */
    private record Scratch(int rows, Buffer ids, Buffer pos, Buffer x, Buffer a, Buffer qkv, Buffer o, Buffer gate,
                           Buffer q, Buffer k, Buffer v, Buffer router, Buffer expertIds, Buffer expertWeights,
                           Buffer act, Buffer pairs, Buffer logits, Buffer xe, Buffer up, Buffer de, Buffer groupTokens,
                           Buffer groupPairs) {
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
                    d.ints(rows * K));                  // pair index of each pair, grouped by expert
        }

        void close() {
            for (Buffer b : List.of(ids, pos, x, a, qkv, o, gate, q, k, v, router, expertIds, expertWeights, act, pairs,
                    logits, xe, up, de, groupTokens, groupPairs)) b.close();
        }
    }

    ResidentDecoder(ModelConfig c, DeviceOps d, Tensor embed, Tensor lmHead, float[] finalNorm, DecoderLayer[] layers,
                    LocalExperts local) {
        this.c = c;
        this.d = d;
        this.embed = embed;
        this.lmHead = lmHead;
        this.layers = layers;
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
            experts[l] = d.experts(local.w1[l], local.w3[l], local.w2[l]);
        }
        this.finalNorm = constant(finalNorm);
        d.preload(weights);
    }

    /** Whether this model can decode on the device: every expert local, shapes the kernels take. */
    static boolean supports(ModelConfig c, ExpertExecutor experts) {
        if (!(experts instanceof LocalExperts local)) return false;
        for (int l = 0; l < c.numLayers(); l++) {
            for (int e = 0; e < c.numExperts(); e++) if (!local.hosts(l, e)) return false;
        }
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
        int n = tokens.length, L = layers.length;
        if (s == null || s.rows < n) {
            if (s != null) s.close();
            int rows = Math.max(n, s == null ? 1 : 2 * s.rows);
            s = Scratch.of(d, c, rows, rows);
        }
        DeviceState[] dev = new DeviceState[n];
        int[] pos = new int[n];
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
        for (int i = 0; i < n; i++) {
            dev[i] = states.get(i).onDevice(d);
            pos[i] = states.get(i).position();
        }
        // token ids and positions in; x = RMSNorm_in0(embed[ids]): [n, h]
        embedRows(s, tokens, pos, n);
        for (int l = 0; l < L; l++) {
            DecoderLayer layer = layers[l];
            // attention: a [n, h]
            if (layer.lightning != null) lightning(l, layer.lightning, dev, n);
            else softmax(l, layer.softmax, dev, n);
            block(l, layer, s, n, false);
        }
        // LM head: logits [n, V], the only data that comes back
        float[][] out = logits(s, s.x, n);
        for (SequenceState st : states) st.advance(1);
        return out;
    }

    /**
     * Prefill of one sequence on the device: {@code tokens} (at most one chunk) run after what {@code st} holds, the
     * same math as the host forward pass, the lightning layers in their recurrent form over the chunk
     * ({@link DeviceOps#lightningScan}), each softmax layer's queries attending over the grown cache
     * ({@link DeviceOps#causalAttention}).
     * Returns the logits of rows {@code logitRows} of the chunk (row r's predict token r + 1).
     */
    synchronized float[][] prefill(SequenceState st, int[] tokens, int[] logitRows) {
        int n = tokens.length, h = c.hiddenSize(), L = layers.length, m = logitRows.length;
        if (ps == null || ps.rows < n || ps.logits.length() < (long) Math.max(1, m) * c.vocabSize()) {
            if (ps != null) ps.close();
            ps = Scratch.of(d, c, Math.max(n, ps == null ? 1 : ps.rows), Math.max(1, m));
        }
        Scratch s = ps;
        DeviceState dev = st.onDevice(d);
        int start = st.position();
        int[] pos = new int[n];
        for (int t = 0; t < n; t++) pos[t] = start + t;
        // x = RMSNorm_in0(embed[ids]): [n, h]
        embedRows(s, tokens, pos, n);
        for (int l = 0; l < L; l++) {
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
                int len = dev.appendRows(l, s.k, s.v, 0, n);               // the cache now holds the chunk
                // causal: row t sees positions <= start + t
                d.causalAttention(s.q, n, sa.H, sa.KV, sa.D, dev.keys(l), dev.values(l), len - n + 1, s.o);
                d.matmul(s.o, n, sa.wo, s.a);
            }
            block(l, layer, s, n, n > GROUP_MIN_ROWS);
        }
        // the wanted rows of the final-normed x, then the LM head on those alone: logits [m, V]
        for (int i = 0; i < m; i++) d.copy(s.x, (long) logitRows[i] * h, s.a, (long) i * h, h);
        float[][] out = logits(s, s.a, m);
        st.advance(n);
        return out;
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
     * The rest of layer l after its attention wrote s.a [n, h]: x = RMSNorm_post(a_attn x + b_attn a); the MoE (router
     * top-k, each chosen expert's SwiGLU into the pairs [n*K, h], {@code grouped} by expert for a prefill chunk); then
     * x = RMSNorm_next(a_mlp x + b_mlp sum_k w_k pairs_k) with the next layer's input norm or the final one.
     */
    private void block(int l, DecoderLayer layer, Scratch s, int n, boolean grouped) {
        int h = c.hiddenSize();
        float eps = (float) c.rmsNormEps();
        d.residualNorm(s.x, layer.attnAlpha, s.a, null, 1, layer.attnBeta, n, h, postNorm[l], eps, s.x);
        MoeLayer moe = layer.moe;
        d.matmul(s.x, n, moe.gate, s.router);
        d.route(s.router, n, moe.E, moe.K, s.expertIds, s.expertWeights);
        if (grouped) groupedExperts(l, moe, s, n);
        else d.runExperts(experts[l], s.x, n, moe.K, s.expertIds, s.act, s.pairs);
        d.residualNorm(s.x, layer.mlpAlpha, s.pairs, s.expertWeights, moe.K, layer.mlpBeta, n, h,
                l + 1 < layers.length ? inNorm[l + 1] : finalNorm, eps, s.x);
        d.flush(); // the device runs this layer while the host enqueues the next
    }

    /** Above this many rows, a chunk's experts run grouped (one product per expert) rather than 8 rows a pass. */
    static final int GROUP_MIN_ROWS = 8;

    /**
     * The experts of layer l for a prefill chunk, grouped as {@link LocalExperts} does on the host: the router's ids
     * come back to the host (n * K ints), the pairs are grouped by expert, and each chosen expert runs once over its
     * rows: gather, W1 and W3 products, SiLU(g) * u, W2 product, scatter into the pairs' rows of s.pairs [n * K, h].
     * Each expert's weights are read once per chunk (8 rows a pass would read them n / 8 times).
     */
    private void groupedExperts(int l, MoeLayer moe, Scratch s, int n) {
        int K = moe.K, E = moe.E, h = c.hiddenSize(), I = c.intermediateSize(), pairs = n * K;
        int[] ids = new int[pairs];
        d.read(s.expertIds, ids, pairs);
        int[] start = new int[E + 1];
        for (int id : ids) start[id + 1]++;
        for (int e = 0; e < E; e++) start[e + 1] += start[e];
        int[] fill = java.util.Arrays.copyOf(start, E), tokenRow = new int[pairs], pairIndex = new int[pairs];
        for (int p = 0; p < pairs; p++) {
            int at = fill[ids[p]]++;
            tokenRow[at] = p / K;
            pairIndex[at] = p;
        }
        d.write(s.groupTokens, tokenRow, pairs);
        d.write(s.groupPairs, pairIndex, pairs);
        for (int e = 0; e < E; e++) {
            int m = start[e + 1] - start[e];
            if (m == 0) continue;
            d.gatherRows(s.x, h, s.groupTokens, start[e], m, s.xe);                     // xe [m, h]
            d.expertProduct(experts[l], DeviceOps.ExpertWeight.W1, e, s.xe, m, s.act); // g [m, I]
            d.expertProduct(experts[l], DeviceOps.ExpertWeight.W3, e, s.xe, m, s.up);  // u [m, I]
            d.siluMul(s.act, s.up, (long) m * I);
            d.expertProduct(experts[l], DeviceOps.ExpertWeight.W2, e, s.act, m, s.de); // [m, h]
            d.scatterRows(s.de, h, s.groupPairs, start[e], m, s.pairs);
        }
    }

    /** Lightning attention of layer l: s.x [n, h] -> s.a [n, h], each sequence's S advanced one step. */
    private void lightning(int l, LightningAttention la, DeviceState[] dev, int n) {
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
    private void softmax(int l, SoftmaxAttention sa, DeviceState[] dev, int n) {
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
        if (s != null) s.close();
        s = null;
        if (ps != null) ps.close();
        ps = null;
        for (Buffer b : constants) b.close();
        constants.clear();
    }
}
