package io.lightmesh.engine.model;

/**
 * The operations of the forward pass over one micro-batch of rows (n tokens, of one sequence or several), as the
 * host's arrays ({@link HostLayerOps}) and the device ({@link DeviceLayerOps}, fused kernels where it has them)
 * implement them. {@link ForwardPass} calls them in the paper's order; each implementation keeps its own
 * activations for the rows: x [n, h] (the normalised residual stream: postnorm carries RMSNorm(h), so each block's
 * residual and the next norm are one operation), o [n, H*D], the router's ids and weights [n, K], the experts' y.
 *
 * <p>Every implementation computes the same math within fp32 rounding; the fixture tests run all of them.
 */
interface LayerOps {

    /** {@code x = RMSNorm_in0(embed[ids])}: [n, h]. */
    void embed();

    /**
     * Lightning attention of layer l: {@code qkv = SiLU(x W_qkv^T)}; per sequence {@code S = exp(-lambda) S + k^T v,
     * o = q S} (block form or recurrence); {@code o = RMSNorm_1e-6(o) * sigmoid(x W_gate^T)}: o [n, H*D].
     */
    void lightning(int l, LightningAttention la);

    /**
     * Softmax attention of layer l: q, k, v with RoPE at each row's position, k and v appended to each sequence's
     * cache, each query over the cache up to its own position: o [n, H*D].
     */
    void softmax(int l, SoftmaxAttention sa);

    /**
     * {@code x = RMSNorm_post(a_attn x + b_attn (o W_o^T))}; the router's top-k of {@code softmax(x W_g^T)},
     * renormalised: ids, weights [n, K].
     */
    void outputAndRoute(int l, DecoderLayer layer);

    /**
     * Starts the chosen experts of every row, {@code y = sum_k w_k Expert_k(x)} [n, h]: in-process they run now (or
     * within {@link #finishMoe}); remote ones are called and computed while other micro-batches run.
     */
    void startMoe(int l, DecoderLayer layer);

    /**
     * Waits for the experts started by {@link #startMoe}, then {@code x = RMSNorm_next(a_mlp x + b_mlp y)} with
     * layer l+1's input norm, or the final norm after the last layer.
     */
    void finishMoe(int l, DecoderLayer layer);
}
