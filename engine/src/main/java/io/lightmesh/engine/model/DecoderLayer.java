package io.lightmesh.engine.model;

/**
 * The weights of one postnorm decoder layer (its math is {@link ForwardPass}'s): the residual carries the normalised
 * input.
 * <pre>
 *   x1 = RMSNorm_in(h);    h1 = a_attn * x1 + b_attn * Attn(x1)
 *   x2 = RMSNorm_post(h1); h2 = a_mlp  * x2 + b_mlp  * MoE(x2)
 * </pre>
 */
final class DecoderLayer {
    final float[] inputNorm, postNorm; // [h]
    final LightningAttention lightning; // exactly one of lightning / softmax is set
    final SoftmaxAttention softmax;
    final MoeLayer moe;
    final float attnAlpha, attnBeta, mlpAlpha, mlpBeta;

    DecoderLayer(float[] inputNorm, float[] postNorm, LightningAttention lightning,
                 SoftmaxAttention softmax, MoeLayer moe, float attnAlpha, float attnBeta, float mlpAlpha, float mlpBeta) {
        this.inputNorm = inputNorm;
        this.postNorm = postNorm;
        this.lightning = lightning;
        this.softmax = softmax;
        this.moe = moe;
        this.attnAlpha = attnAlpha;
        this.attnBeta = attnBeta;
        this.mlpAlpha = mlpAlpha;
        this.mlpBeta = mlpBeta;
    }

    /** The attention's output projection W_o [h, H*D], lightning or softmax. */
    io.lightmesh.engine.tensor.Tensor outputWeight() { return lightning != null ? lightning.wOut : softmax.wo; }
}
