package io.lightmesh.engine.backend;

import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.DeviceOps.ExpertSet;
import io.lightmesh.engine.tensor.Tensor;

/**
 * A decode step of up to {@link #maxRows()} rows (one token of each sequence of the batch) in seven launches a layer
 * (five in the form with tails, see the OpenCL launcher), the whole batch in each: what a device offers so that a step costs few kernel launches ({@link DeviceOps#fused}).
 * Each operation is the composition of {@link DeviceOps} operations named in its comment, with the same math and
 * the same fp32 results within rounding; the backend's tests check them against the per-operation path.
 *
 * <p>The step's rows are described once ({@link #rows}): token id, position, and the slot of each sequence's
 * lightning states in a pool buffer [slots, lightning layers, stride] (S [H, D, D] at the start of each stride). A softmax layer's KV caches stay per
 * sequence; {@code kCaches[t]} is row t's, holding rows 0..position[t] - 1 before the step and room for one more.
 */
public interface FusedDecode {

    /** The most rows one step takes. */
    int maxRows();

    /** Whether the fused kernels take weights of this dtype and these row lengths (else the per-operation path). */
    boolean takes(Tensor... weights);

    /** Token ids, positions and pool slots of the step's n rows (one transfer). */
    void rows(int[] ids, int[] positions, int[] slots, int n);

    /** {@code x = RMSNorm_w(table[ids])}: {@link DeviceOps#embed} then {@link DeviceOps#rmsNorm}. */
    void embedNorm(Tensor table, int n, Buffer w, float eps, Buffer x);

    /**
     * A lightning layer's input products: {@code qkv = SiLU(x W_qkv^T)} [n, 3HD] and {@code gate = x W_gate^T} [n, HD]
     * ({@link DeviceOps#matmul} twice and {@link DeviceOps#silu}).
     */
    void lightningProjections(Buffer x, int n, Tensor wQkv, Tensor wGate, Buffer qkv, Buffer gate);

    /**
     * {@link #lightningProjections} then {@link #lightning} in one launch, where the device offers it for these rows and
     * shapes (the OpenCL decode kernels v3 at one row); false where it does not, and nothing ran.
     */
    default boolean lightningLayer(Buffer x, int n, Tensor wQkv, Tensor wGate, Buffer qkv, Buffer gate, int heads, int dim,
                                   Buffer decay, Buffer pool, int layer, int layers, long stride, Buffer o, Buffer w,
                                   float eps) {
        return false;
    }

    /**
     * One lightning step of every row, the state of row t at slot {@code slots[t]} of {@code pool} (this layer is
     * {@code layer} of {@code layers} in a slot, {@code stride} elements apart), then {@code o = RMSNorm_w(o) * sigmoid(gate)}
     * ({@link DeviceOps#lightningStep} per row, {@link DeviceOps#normGate}).
     */
    void lightning(Buffer qkv, int n, int heads, int dim, Buffer decay, Buffer pool, int layer, int layers, long stride,
                   Buffer o,
                   Buffer gate, Buffer w, float eps);

    /**
     * A softmax layer's input products q, k, v, RoPE on q and k at each row's position, and row t's k and v appended
     * to its caches at row position[t] ({@link DeviceOps#matmul} three times, {@link DeviceOps#rope} twice, copies).
     */
    void attentionProjections(Buffer x, int n, Tensor wq, Tensor wk, Tensor wv, Buffer q, Buffer k, Buffer v,
                              int heads, int kvHeads, int dim, Buffer invFreq, int half, Buffer[] kCaches,
                              Buffer[] vCaches);

    /** Row t's query over its cache's position[t] + 1 rows, every row in one launch ({@link DeviceOps#decodeAttention}). */
    void attention(Buffer q, int n, int heads, int kvHeads, int dim, Buffer[] kCaches, Buffer[] vCaches, int maxLen,
                   Buffer o);

    /**
     * {@code a = o W^T}; {@code x = RMSNorm_w(alpha x + beta a)}; the router's logits {@code x gate^T} and top k into
     * ids, wts [n, k] ({@link DeviceOps#matmul}, {@link DeviceOps#residualNorm}, {@link DeviceOps#matmul},
     * {@link DeviceOps#route}); with a route log, the ids also go to {@code routeLog[logOff..]}.
     */
    void outputAndRoute(Buffer o, int n, Tensor w, Buffer a, Buffer x, float alpha, float beta, Buffer normW, float eps,
                        Tensor gate, int k, Buffer ids, Buffer wts, Buffer routeLog, long logOff);

    /**
     * The chosen experts of every row and the MoE residual with the next norm: {@link DeviceOps#runExperts} then
     * {@link DeviceOps#residualNorm} with the router's weights (three launches, two with tails).
     */
    void experts(ExpertSet set, Buffer x, int n, int k, Buffer ids, Buffer wts, Buffer act, Buffer pairs, float alpha,
                 float beta, Buffer normW, float eps);
}
