package io.lightmesh.engine.backend;

import io.lightmesh.engine.tensor.Tensor;

/**
 * The hot operations of the forward pass, one implementation per backend (plain Java reference, Vector API,
 * OpenCL). Activations are row-major fp32 arrays; weights are checkpoint {@link Tensor}s in their storage dtype,
 * which a backend may cache in its own form (on the device, for OpenCL) keyed by tensor identity.
 *
 * <p>Every implementation is tested against {@link ReferenceOps} within a stated tolerance.
 */
public interface TensorOps extends AutoCloseable {

    /** Short name for logs and {@code --backend}: reference, vector, opencl. */
    String name();

    /**
     * Matrix product with a weight in the checkpoint's [out, in] layout: {@code y[n, out] = x[n, in] . W^T}.
     * {@code n == 1} is the decode matrix-vector case.
     */
    void matmul(float[] x, int n, Tensor w, float[] y);

    /**
     * Lightning attention over {@code n} new tokens in block form (Lightning Attention-2), continuing from
     * {@code state} and leaving it updated. Equal to running {@link #lightningDecode} token by token.
     *
     * @param q,k,v  [n, H, D] (already SiLU-activated)
     * @param decay  [H] per-head lambda for this layer
     * @param state  [H, D, D] S with S[h][i][j] = sum_t exp(-lambda (T-t)) k_t[i] v_t[j]; updated in place
     * @param out    [n, H, D]
     */
    void lightningPrefill(float[] q, float[] k, float[] v, int n, int heads, int headDim, float[] decay,
                          int blockSize, float[] state, float[] out);

    /**
     * One recurrent lightning step for a batch of sequences, one token each:
     * {@code S = exp(-lambda) S + k^T v; o = q S}.
     *
     * @param q,k,v  [B, H, D]
     * @param states B arrays of [H, D, D], updated in place
     * @param out    [B, H, D]
     */
    void lightningDecode(float[] q, float[] k, float[] v, int batch, int heads, int headDim, float[] decay,
                         float[][] states, float[] out);

    /**
     * Causal softmax attention with GQA for {@code n} queries at positions {@code start..start+n-1} over a cache
     * holding keys/values for positions {@code 0..start+n-1} (RoPE already applied). Scale 1/sqrt(D), fp32 softmax.
     *
     * @param q      [n, H, D]
     * @param kCache [T, KV, D] (T >= start + n; rows past start + n are ignored)
     * @param vCache [T, KV, D]
     * @param out    [n, H, D]
     */
    void softmaxAttention(float[] q, int n, int heads, int kvHeads, int headDim, float[] kCache, float[] vCache,
                          int start, float[] out);

    /**
     * The weights the model will multiply by, given once at load: a device backend may convert and place them now
     * (OpenCL packs them into a few large buffers; one buffer per weight would exhaust the driver's contexts on a
     * real model). Host backends read weights in place and ignore this.
     */
    default void preload(java.util.Collection<Tensor> weights) {}

    /**
     * The device-resident operations of this backend, or null when it has none (host backends). When present, the
     * model keeps a decode step's activations, lightning states and KV caches on the device ({@link DeviceOps}).
     */
    default DeviceOps resident() { return null; }

    /** Releases device buffers and threads; the default holds none. */
    @Override
    default void close() {}
}
