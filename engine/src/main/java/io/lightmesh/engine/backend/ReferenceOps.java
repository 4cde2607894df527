package io.lightmesh.engine.backend;

import io.lightmesh.engine.tensor.Tensor;

/**
 * The plain Java backend: scalar loops written like the paper, single-threaded. Every other backend is tested
 * against this one; it is also the backend of last resort.
 */
public final class ReferenceOps implements TensorOps {

    @Override
    public String name() { return "reference"; }

    @Override
    public void matmul(float[] x, int n, Tensor w, float[] y) {
        int out = (int) w.dim(0), in = (int) w.dim(1);
        float[] row = new float[in];
        for (int o = 0; o < out; o++) {
            w.copyTo((long) o * in, row, 0, in);
            for (int t = 0; t < n; t++) {
                float acc = 0f;
                int xo = t * in;
                for (int i = 0; i < in; i++) acc += x[xo + i] * row[i];
                y[t * out + o] = acc;
            }
        }
    }

    @Override
    public void lightningPrefill(float[] q, float[] k, float[] v, int n, int heads, int headDim, float[] decay,
                                 int blockSize, float[] state, float[] out) {
        int D = headDim, HD = heads * D;
        for (int h = 0; h < heads; h++) {
            float lambda = decay[h];
            int so = h * D * D;
            for (int b0 = 0; b0 < n; b0 += blockSize) {
                int m = Math.min(blockSize, n - b0);
                for (int a = 0; a < m; a++) {
                    int qa = (b0 + a) * HD + h * D;
                    // intra-block: sum_{b<=a} exp(-lambda (a-b)) (q_a . k_b) v_b
                    for (int j = 0; j < D; j++) out[qa + j] = 0f;
                    for (int b = 0; b <= a; b++) {
                        int kb = (b0 + b) * HD + h * D;
                        float s = 0f;
                        for (int i = 0; i < D; i++) s += q[qa + i] * k[kb + i];
                        s *= (float) Math.exp(-lambda * (a - b));
                        for (int j = 0; j < D; j++) out[qa + j] += s * v[kb + j];
                    }
                    // inter-block: (q_a exp(-lambda (a+1))) S_prev
                    float qd = (float) Math.exp(-lambda * (a + 1));
                    for (int i = 0; i < D; i++) {
                        float qi = q[qa + i] * qd;
                        int sr = so + i * D;
                        for (int j = 0; j < D; j++) out[qa + j] += qi * state[sr + j];
                    }
                }
                // S_new = exp(-lambda m) S_prev + (K exp(-lambda (m-1-b)))^T V
                float blockDecay = (float) Math.exp(-lambda * m);
                for (int e = 0; e < D * D; e++) state[so + e] *= blockDecay;
                for (int b = 0; b < m; b++) {
                    int kb = (b0 + b) * HD + h * D;
                    float kd = (float) Math.exp(-lambda * (m - 1 - b));
                    for (int i = 0; i < D; i++) {
                        float ki = k[kb + i] * kd;
                        int sr = so + i * D;
                        for (int j = 0; j < D; j++) state[sr + j] += ki * v[kb + j];
                    }
                }
            }
        }
    }

    @Override
    public void lightningDecode(float[] q, float[] k, float[] v, int batch, int heads, int headDim, float[] decay,
                                float[][] states, float[] out) {
        int D = headDim, HD = heads * D;
        for (int s = 0; s < batch; s++) {
            float[] state = states[s];
            for (int h = 0; h < heads; h++) {
                float ratio = (float) Math.exp(-decay[h]);
                int base = s * HD + h * D, so = h * D * D;
                for (int j = 0; j < D; j++) out[base + j] = 0f;
                for (int i = 0; i < D; i++) {
                    float ki = k[base + i], qi = q[base + i];
                    int sr = so + i * D;
                    for (int j = 0; j < D; j++) {
                        float sij = ratio * state[sr + j] + ki * v[base + j];
                        state[sr + j] = sij;
                        out[base + j] += qi * sij;
                    }
                }
            }
        }
    }

    @Override
    public void softmaxAttention(float[] q, int n, int heads, int kvHeads, int headDim, float[] kCache,
                                 float[] vCache, int start, float[] out) {
        int D = headDim, group = heads / kvHeads, KVD = kvHeads * D, HD = heads * D;
        float scale = (float) (1.0 / Math.sqrt(D));
        float[] scores = new float[start + n];
        for (int t = 0; t < n; t++) {
            int len = start + t + 1; // causal: positions 0..start+t
            for (int h = 0; h < heads; h++) {
                int qo = t * HD + h * D, kvh = h / group;
                float max = Float.NEGATIVE_INFINITY;
                for (int p = 0; p < len; p++) {
                    int ko = p * KVD + kvh * D;
                    float s = 0f;
                    for (int i = 0; i < D; i++) s += q[qo + i] * kCache[ko + i];
                    scores[p] = s * scale;
                    max = Math.max(max, scores[p]);
                }
                float sum = 0f;
                for (int p = 0; p < len; p++) {
                    scores[p] = (float) Math.exp(scores[p] - max);
                    sum += scores[p];
                }
                for (int j = 0; j < D; j++) out[qo + j] = 0f;
                for (int p = 0; p < len; p++) {
                    float wgt = scores[p] / sum;
                    int vo = p * KVD + kvh * D;
                    for (int j = 0; j < D; j++) out[qo + j] += wgt * vCache[vo + j];
                }
            }
        }
    }
}
