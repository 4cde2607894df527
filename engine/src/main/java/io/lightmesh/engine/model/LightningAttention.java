package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;

import java.util.Arrays;

/**
 * Lightning attention (linear attention with a per-head exponential decay) for one layer:
 * <pre>
 *   qkv = SiLU(x W_qkv^T)                 (n, H, 3D) -> q | k | v
 *   o_t = sum_{j<=t} exp(-lambda (t-j)) (q_t . k_j) v_j     (block form in prefill, recurrence in decode)
 *   y   = (RMSNorm_{1e-6}(o) * sigmoid(x W_gate^T)) W_out^T
 * </pre>
 */
final class LightningAttention {
    final int layer, H, D, blockSize;
    final Tensor wQkv;   // [3*H*D, h]
    final Tensor wGate;  // [H*D, h]
    final float[] normW; // [H*D]
    final Tensor wOut;   // [h, H*D]
    final float[] decay; // [H] lambda_h for this layer

    LightningAttention(ModelConfig c, int layer, Tensor wQkv, Tensor wGate, float[] normW, Tensor wOut) {
        this.layer = layer;
        this.H = c.numHeads();
        this.D = c.headDim();
        this.blockSize = c.blockSize();
        this.wQkv = wQkv;
        this.wGate = wGate;
        this.normW = normW;
        this.wOut = wOut;
        this.decay = decays(c, layer);
    }

    /**
     * lambda_h = slope_h * (1 - l/(L-1) + 1e-5), slopes 2^(-8(h+1)/H) (ALiBi's interleave when H is not a power
     * of two). HF's port divides by (L-1+1e-5) instead of (L-1); each dialect follows its own reference.
     */
    static float[] decays(ModelConfig c, int layer) {
        int L = c.numLayers();
        double[] slopes = slopes(c.numHeads());
        double factor;
        if (c.modelType().equals("minimax")) factor = 1 - layer / (L - 1 + 1e-5) + 1e-5;
        else factor = L > 1 ? 1 - (double) layer / (L - 1) + 1e-5 : 1.0;
        float[] d = new float[slopes.length];
        for (int h = 0; h < d.length; h++) d[h] = (float) (slopes[h] * factor);
        return d;
    }

    static double[] slopes(int n) {
        double log2 = Math.log(n) / Math.log(2);
        if (log2 == Math.floor(log2)) {
            double[] s = new double[n];
            double start = Math.pow(2, -8.0 / n);
            for (int i = 0; i < n; i++) s[i] = Math.pow(start, i + 1);
            return s;
        }
        int closest = 1 << (int) Math.floor(log2);
        double[] a = slopes(closest), b = slopes(2 * closest);
        double[] s = Arrays.copyOf(a, n);
        for (int i = 0; i < n - closest; i++) s[closest + i] = b[2 * i];
        return s;
    }

    /** q, k, v [n, H, D] out of qkv [n, H, 3D] (per head q | k | v, the checkpoint's fused layout). */
    static float[][] splitQkv(float[] qkv, int n, int H, int D) {
        int HD = H * D;
        float[] q = new float[n * HD], k = new float[n * HD], v = new float[n * HD];
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < H; h++) {
                int src = t * 3 * HD + h * 3 * D, dst = t * HD + h * D;
                System.arraycopy(qkv, src, q, dst, D);
                System.arraycopy(qkv, src + D, k, dst, D);
                System.arraycopy(qkv, src + 2 * D, v, dst, D);
            }
        }
        return new float[][]{q, k, v};
    }

    /** x [rows, h] -> y [rows, h] (y may not alias x). */
    void forward(TensorOps ops, Batch batch, float[] x, float[] y) {
        int n = batch.rows(), HD = H * D;
        // qkv projection + SiLU: (n, H, 3D)
        float[] qkv = new float[n * 3 * HD];
        ops.matmul(x, n, wQkv, qkv);
        Functions.siluInPlace(qkv, qkv.length);
        // split heads: q, k, v each (n, H, D)
        float[][] split = splitQkv(qkv, n, H, D);
        float[] q = split[0], k = split[1], v = split[2];
        float[] o = new float[n * HD];
        attend(ops, batch, q, k, v, o);
        // output norm over all H*D dims, sigmoid gate, projection
        Functions.rmsNorm(o, n, HD, normW, ModelConfig.LIGHTNING_NORM_EPS, o);
        float[] gate = new float[n * HD];
        ops.matmul(x, n, wGate, gate);
        Functions.mulSigmoid(o, gate, o.length);
        ops.matmul(o, n, wOut, y);
    }

    private void attend(TensorOps ops, Batch batch, float[] q, float[] k, float[] v, float[] o) {
        int HD = H * D;
        if (batch.allSingleTokens()) { // decode: one recurrent step for every sequence at once
            float[][] states = new float[batch.segments().size()][];
            for (int i = 0; i < states.length; i++) states[i] = batch.segments().get(i).state().lightningState(layer);
            ops.lightningDecode(q, k, v, states.length, H, D, decay, states, o);
            return;
        }
        for (Batch.Segment s : batch.segments()) { // prefill: block form per sequence, continuing its state
            int from = s.row() * HD, len = s.count() * HD;
            float[] qs = Arrays.copyOfRange(q, from, from + len);
            float[] ks = Arrays.copyOfRange(k, from, from + len);
            float[] vs = Arrays.copyOfRange(v, from, from + len);
            float[] os = new float[len];
            float[] state = s.state().lightningState(layer);
            if (s.count() == 1) ops.lightningDecode(qs, ks, vs, 1, H, D, decay, new float[][]{state}, os);
            else ops.lightningPrefill(qs, ks, vs, s.count(), H, D, decay, blockSize, state, os);
            System.arraycopy(os, 0, o, from, len);
        }
    }
}
