package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;

/**
 * Top-k mixture of experts: p = softmax(x W_g^T) in fp32, keep the top k, renormalise them to sum 1, and have the
 * {@link ExpertExecutor} combine the chosen experts' outputs.
 */
final class MoeLayer {
    final int layer, E, K;
    final Tensor gate; // [E, h]

    MoeLayer(ModelConfig c, int layer, Tensor gate) {
        this.layer = layer;
        this.E = c.numExperts();
        this.K = c.topK();
        this.gate = gate;
    }

    /** Routing for n rows: fills experts [n, k] and weights [n, k]. */
    void route(TensorOps ops, float[] x, int n, int[] experts, float[] weights) {
        float[] logits = new float[n * E];
        ops.matmul(x, n, gate, logits);
        float[] p = new float[E];
        for (int t = 0; t < n; t++) {
            float max = Float.NEGATIVE_INFINITY;
            for (int e = 0; e < E; e++) max = Math.max(max, logits[t * E + e]);
            float sum = 0;
            for (int e = 0; e < E; e++) sum += p[e] = (float) Math.exp(logits[t * E + e] - max);
            for (int e = 0; e < E; e++) p[e] /= sum;
            // top-k by probability; ties go to the lower expert id, as torch.topk does on CPU and CUDA
            float kept = 0;
            for (int j = 0; j < K; j++) {
                int best = -1;
                for (int e = 0; e < E; e++) if (p[e] >= 0 && (best < 0 || p[e] > p[best])) best = e;
                experts[t * K + j] = best;
                weights[t * K + j] = p[best];
                kept += p[best];
                p[best] = -1f;
            }
            for (int j = 0; j < K; j++) weights[t * K + j] /= kept;
        }
    }

    int topK() { return K; }
}
