package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;

/**
 * Causal softmax attention with GQA (head h reads kv head h / (H/KV)), partial NeoX RoPE on the first rotaryDim
 * dims, and a per-sequence {@link KvCache}.
 */
final class SoftmaxAttention {
    final int layer, H, KV, D;
    final Tensor wq, wk, wv, wo; // [H*D, h], [KV*D, h], [KV*D, h], [h, H*D]
    final Rope rope;

    SoftmaxAttention(ModelConfig c, int layer, Tensor wq, Tensor wk, Tensor wv, Tensor wo) {
        this.layer = layer;
        this.H = c.numHeads();
        this.KV = c.numKvHeads();
        this.D = c.headDim();
        this.wq = wq;
        this.wk = wk;
        this.wv = wv;
        this.wo = wo;
        this.rope = new Rope(D, c.rotaryDim(), c.ropeTheta());
    }

    /** x [rows, h] -> y [rows, h]. */
    void forward(TensorOps ops, Batch batch, float[] x, float[] y) {
        int n = batch.rows(), HD = H * D, KVD = KV * D;
        // q, k, v projections: (n, H, D), (n, KV, D), (n, KV, D)
        float[] q = new float[n * HD], k = new float[n * KVD], v = new float[n * KVD];
        ops.matmul(x, n, wq, q);
        ops.matmul(x, n, wk, k);
        ops.matmul(x, n, wv, v);
        float[] o = new float[n * HD];
        for (Batch.Segment s : batch.segments()) {
            int start = s.state().position();
            // RoPE at each token's absolute position
            for (int t = 0; t < s.count(); t++) {
                int row = s.row() + t;
                rope.apply(q, row * HD, H, start + t);
                rope.apply(k, row * KVD, KV, start + t);
            }
            KvCache cache = s.state().kvCache(layer);
            float[] ks = new float[s.count() * KVD], vs = new float[s.count() * KVD];
            System.arraycopy(k, s.row() * KVD, ks, 0, ks.length);
            System.arraycopy(v, s.row() * KVD, vs, 0, vs.length);
            cache.append(ks, vs, s.count());
            float[] qs = new float[s.count() * HD], os = new float[s.count() * HD];
            System.arraycopy(q, s.row() * HD, qs, 0, qs.length);
            ops.softmaxAttention(qs, s.count(), H, KV, D, cache.keys(), cache.values(), start, os);
            System.arraycopy(os, 0, o, s.row() * HD, os.length);
        }
        ops.matmul(o, n, wo, y);
    }
}
