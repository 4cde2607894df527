package io.lightmesh.engine.model;

import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;

/**
 * The weights of causal softmax attention ({@link LayerOps#softmax}) with GQA (head h reads kv head h / (H/KV)),
 * partial NeoX RoPE on the first rotaryDim dims, and a per-sequence {@link KvCache}.
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
}
