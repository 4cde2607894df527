package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.TensorOps;

/**
 * One postnorm decoder layer: the residual carries the normalised input.
 * <pre>
 *   x1 = RMSNorm_in(h);    h1 = a_attn * x1 + b_attn * Attn(x1)
 *   x2 = RMSNorm_post(h1); h2 = a_mlp  * x2 + b_mlp  * MoE(x2)
 * </pre>
 */
final class DecoderLayer {
    final float[] inputNorm, postNorm; // [h]
    final double eps;
    final LightningAttention lightning; // exactly one of lightning / softmax is set
    final SoftmaxAttention softmax;
    final MoeLayer moe;
    final float attnAlpha, attnBeta, mlpAlpha, mlpBeta;

    DecoderLayer(float[] inputNorm, float[] postNorm, double eps, LightningAttention lightning,
                 SoftmaxAttention softmax, MoeLayer moe, float attnAlpha, float attnBeta, float mlpAlpha, float mlpBeta) {
        this.inputNorm = inputNorm;
        this.postNorm = postNorm;
        this.eps = eps;
        this.lightning = lightning;
        this.softmax = softmax;
        this.moe = moe;
        this.attnAlpha = attnAlpha;
        this.attnBeta = attnBeta;
        this.mlpAlpha = mlpAlpha;
        this.mlpBeta = mlpBeta;
    }

    /** h [rows, hidden] is replaced by the layer's output. */
    void forward(TensorOps ops, ExpertExecutor experts, Batch batch, float[] h, int hidden) {
        int n = batch.rows(), len = n * hidden;
        float[] x = new float[len], a = new float[len];
        // attention block
        Functions.rmsNorm(h, n, hidden, inputNorm, eps, x);
        if (lightning != null) lightning.forward(ops, batch, x, a);
        else softmax.forward(ops, batch, x, a);
        Functions.scaledResidual(x, attnAlpha, a, attnBeta, len, h);
        // MoE block
        Functions.rmsNorm(h, n, hidden, postNorm, eps, x);
        moe.forward(ops, experts, x, n, a);
        Functions.scaledResidual(x, mlpAlpha, a, mlpBeta, len, h);
    }
}
