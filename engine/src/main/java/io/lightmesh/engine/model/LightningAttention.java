package io.lightmesh.engine.model;

import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;

import java.util.Arrays;

/**
 * The weights of lightning attention (linear attention with a per-head exponential decay) for one layer, computed by
 * {@link LayerOps#lightning}:
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
}
