package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;

import java.util.Arrays;

/**
 * {@link LayerOps} on the host's arrays: products through the {@link TensorOps} backend (reference, Vector API, or
 * OpenCL per call), elementwise work in {@link Functions}, states in each sequence's {@link SequenceState}, the
 * experts through the {@link ExpertExecutor} (in-process or remote, called in place). Any mix of sequences per step
 * ({@link Batch}): a decode step's single tokens, one prompt, or several prompts side by side.
 */
final class HostLayerOps implements LayerOps {
    private final ModelConfig c;
    private final TensorOps ops;
    private final ExpertExecutor experts;
    private final DecoderLayer[] layers;
    private final Tensor embed;       // [V, h]
    private final float[] finalNorm;  // [h]
    private final Batch batch;
    private final int[] tokens;       // [n]
    private final int n, hidden;
    final float[] x;                  // [n, h]: the normalised residual stream
    private final float[] h, a;       // [n, h]: residual before its norm; attention out, then the experts' y
    private float[] o;                // [n, H*D]: attention output before W_o
    private final int[] ids;          // [n, K]
    private final float[] weights;    // [n, K]

    HostLayerOps(ModelConfig c, TensorOps ops, ExpertExecutor experts, DecoderLayer[] layers, Tensor embed,
                 float[] finalNorm, Batch batch, int[] tokens) {
        this.c = c;
        this.ops = ops;
        this.experts = experts;
        this.layers = layers;
        this.embed = embed;
        this.finalNorm = finalNorm;
        this.batch = batch;
        this.tokens = tokens;
        this.n = batch.rows();
        this.hidden = c.hiddenSize();
        this.x = new float[n * hidden];
        this.h = new float[n * hidden];
        this.a = new float[n * hidden];
        this.ids = new int[n * c.topK()];
        this.weights = new float[n * c.topK()];
    }

    @Override
    public void embed() {
        for (int t = 0; t < n; t++) embed.copyTo((long) tokens[t] * hidden, h, t * hidden, hidden);
        Functions.rmsNorm(h, n, hidden, layers[0].inputNorm, c.rmsNormEps(), x);
    }

    @Override
    public void lightning(int l, LightningAttention la) {
        int H = la.H, D = la.D, HD = H * D;
        // qkv = SiLU(x W_qkv^T): (n, H, 3D), split into q, k, v (n, H, D)
        float[] qkv = new float[n * 3 * HD];
        ops.matmul(x, n, la.wQkv, qkv);
        Functions.siluInPlace(qkv, qkv.length);
        float[][] split = LightningAttention.splitQkv(qkv, n, H, D);
        float[] q = split[0], k = split[1], v = split[2];
        o = new float[n * HD];
        if (batch.allSingleTokens()) { // decode: one recurrent step for every sequence at once
            float[][] states = new float[batch.segments().size()][];
            for (int i = 0; i < states.length; i++) states[i] = batch.segments().get(i).state().lightningState(l);
            ops.lightningDecode(q, k, v, states.length, H, D, la.decay, states, o);
        } else {
            for (Batch.Segment s : batch.segments()) { // prefill: block form per sequence, continuing its state
                int from = s.row() * HD, len = s.count() * HD;
                float[] qs = Arrays.copyOfRange(q, from, from + len);
                float[] ks = Arrays.copyOfRange(k, from, from + len);
                float[] vs = Arrays.copyOfRange(v, from, from + len);
                float[] os = new float[len];
                float[] state = s.state().lightningState(l);
                if (s.count() == 1) ops.lightningDecode(qs, ks, vs, 1, H, D, la.decay, new float[][]{state}, os);
                else ops.lightningPrefill(qs, ks, vs, s.count(), H, D, la.decay, la.blockSize, state, os);
                System.arraycopy(os, 0, o, from, len);
            }
        }
        // o = RMSNorm_1e-6(o) over all H*D dims * sigmoid(x W_gate^T)
        Functions.rmsNorm(o, n, HD, la.normW, ModelConfig.LIGHTNING_NORM_EPS, o);
        float[] gate = new float[n * HD];
        ops.matmul(x, n, la.wGate, gate);
        Functions.mulSigmoid(o, gate, o.length);
    }

    @Override
    public void softmax(int l, SoftmaxAttention sa) {
        int HD = sa.H * sa.D, KVD = sa.KV * sa.D;
        // q, k, v projections: (n, H, D), (n, KV, D), (n, KV, D)
        float[] q = new float[n * HD], k = new float[n * KVD], v = new float[n * KVD];
        ops.matmul(x, n, sa.wq, q);
        ops.matmul(x, n, sa.wk, k);
        ops.matmul(x, n, sa.wv, v);
        o = new float[n * HD];
        for (Batch.Segment s : batch.segments()) {
            int start = s.state().position();
            for (int t = 0; t < s.count(); t++) { // RoPE at each token's absolute position
                int row = s.row() + t;
                sa.rope.apply(q, row * HD, sa.H, start + t);
                sa.rope.apply(k, row * KVD, sa.KV, start + t);
            }
            KvCache cache = s.state().kvCache(l);
            cache.append(Arrays.copyOfRange(k, s.row() * KVD, (s.row() + s.count()) * KVD),
                    Arrays.copyOfRange(v, s.row() * KVD, (s.row() + s.count()) * KVD), s.count());
            float[] qs = Arrays.copyOfRange(q, s.row() * HD, (s.row() + s.count()) * HD), os = new float[s.count() * HD];
            ops.softmaxAttention(qs, s.count(), sa.H, sa.KV, sa.D, cache.keys(), cache.values(), start, os);
            System.arraycopy(os, 0, o, s.row() * HD, os.length);
        }
    }

    @Override
    public void outputAndRoute(int l, DecoderLayer layer) {
        ops.matmul(o, n, layer.outputWeight(), a);                          // a = o W_o^T: [n, h]
        residualNorm(layer.attnAlpha, layer.attnBeta, layer.postNorm);
        layer.moe.route(ops, x, n, ids, weights);
    }

    @Override
    public void startMoe(int l, DecoderLayer layer) {
        experts.run(l, x, n, layer.moe.K, ids, weights, a);                 // y [n, h], into a
    }

    @Override
    public void finishMoe(int l, DecoderLayer layer) {
        residualNorm(layer.mlpAlpha, layer.mlpBeta, l + 1 < layers.length ? layers[l + 1].inputNorm : finalNorm);
    }

    /** {@code x = RMSNorm_w(alpha x + beta a)}. */
    private void residualNorm(float alpha, float beta, float[] w) {
        Functions.scaledResidual(x, alpha, a, beta, n * hidden, h);
        Functions.rmsNorm(h, n, hidden, w, c.rmsNormEps(), x);
    }
}
