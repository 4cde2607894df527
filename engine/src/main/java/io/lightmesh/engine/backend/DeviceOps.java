package io.lightmesh.engine.backend;

import io.lightmesh.engine.tensor.Tensor;

/**
 * Device-resident operations on handles: what a backend with its own memory (OpenCL) offers so that a forward pass
 * can keep activations, lightning states and KV caches on the device across a step and across steps. Only the token
 * ids go in ({@link #write(Buffer, int[], int)}) and the logits come out ({@link #read}); weights are the checkpoint's
 * {@link Tensor}s, placed on the device once.
 *
 * <p>Every operation is enqueued in order on one stream: a read waits for what came before it. Each is checked
 * against the host formulas ({@link ReferenceOps} and the model's elementwise functions) by the backend's tests.
 * Row-major fp32 everywhere; {@code n} or {@code rows} is the number of tokens in the step.
 */
public interface DeviceOps {

    /** A device buffer of {@link #length()} fp32 (or int32) elements. Released explicitly or with its owner. */
    interface Buffer extends AutoCloseable {
        long length();

        @Override
        void close();
    }

    /** The experts of one MoE layer placed side by side on the device, addressed by expert id. */
    interface ExpertSet {}

    // ---- memory ----------------------------------------------------------------------------------------------------

    /** A new fp32 buffer; contents undefined. */
    Buffer floats(long length);

    /** A new int32 buffer; contents undefined. */
    Buffer ints(long length);

    /** A new fp32 buffer holding {@code values} (norm weights, decays and other per-model constants). */
    default Buffer upload(float[] values) {
        Buffer b = floats(values.length);
        write(b, 0, values, 0, values.length);
        return b;
    }

    void write(Buffer dst, long dstOff, float[] src, int srcOff, int n);

    void write(Buffer dst, int[] src, int n);

    /** Copies device data to the host; waits for every operation enqueued before it. */
    void read(Buffer src, long srcOff, float[] dst, int dstOff, int n);

    /** {@code dst[dstOff..+n) = src[srcOff..+n)} on the device. */
    void copy(Buffer src, long srcOff, Buffer dst, long dstOff, long n);

    /** Places these weights on the device now rather than with the first operation that reads each. */
    void preload(java.util.Collection<Tensor> weights);

    // ---- math ------------------------------------------------------------------------------------------------------

    /** {@code out[t, :] = table[ids[t], :]} for t < n; table [V, h] in its storage dtype, out [n, h]. */
    void embed(Tensor table, Buffer ids, int n, Buffer out);

    /** {@code y[n, out] = x[n, in] . W^T}, W in the checkpoint's [out, in] layout (decode sizes: n up to a batch). */
    void matmul(Buffer x, int n, Tensor w, Buffer y);

    /** {@code out = w * x / sqrt(mean(x^2) + eps)} over each row of x [rows, dim]; out may be x. */
    void rmsNorm(Buffer x, int rows, int dim, Buffer w, float eps, Buffer out);

    /**
     * The postnorm residual and the next norm in one pass, row by row over [rows, dim]:
     * {@code h = alpha * x + beta * sum_j weights[t, j] * update[t * k + j]; out = w * h / sqrt(mean(h^2) + eps)}.
     * With {@code weights == null}, k must be 1 and the update is taken as is. out may be x.
     */
    void residualNorm(Buffer x, float alpha, Buffer update, Buffer weights, int k, float beta, int rows, int dim,
                      Buffer w, float eps, Buffer out);

    /** {@code x = x * sigmoid(x)} on the first n elements. */
    void silu(Buffer x, long n);

    /**
     * One recurrent lightning step for the sequence of row {@code row}: {@code S = exp(-lambda_h) S + k^T v;
     * o = q S} per head, reading q | k | v from qkv [rows, H, 3D] (already SiLU-activated).
     *
     * @param state [H, D, D], updated in place
     * @param out   [rows, H*D]; row {@code row} is written
     */
    void lightningStep(Buffer qkv, int row, int heads, int dim, Buffer decay, Buffer state, Buffer out);

    /**
     * Lightning attention over {@code rows} consecutive tokens of one sequence (prefill), in order:
     * {@code S = exp(-lambda_h) S + k_t^T v_t; o_t = q_t S} per head, reading q | k | v from qkv [rows, H, 3D]
     * (already SiLU-activated). Equal to {@link #lightningStep} applied row by row.
     *
     * @param state [H, D, D], updated in place
     * @param out   [rows, H*D]
     */
    void lightningScan(Buffer qkv, int rows, int heads, int dim, Buffer decay, Buffer state, Buffer out);

    /** {@code o = RMSNorm_w(o) * sigmoid(gate)} over each row of o, gate [rows, dim]. */
    void normGate(Buffer o, int rows, int dim, Buffer w, float eps, Buffer gate);

    /**
     * NeoX RoPE on the first {@code 2 * invFreq.length} dims of each head of x [rows, heads, dim], row t at position
     * {@code positions[t]}: angle = position * invFreq[i] in fp32, pairs (i, i + half).
     */
    void rope(Buffer x, int rows, int heads, int dim, Buffer invFreq, int half, Buffer positions);

    /**
     * Causal GQA attention of the one query of row {@code row} of q [rows, H, D] over a cache of {@code len}
     * positions (kCache, vCache [>= len, KV, D], RoPE applied); scale 1/sqrt(D), fp32 softmax; writes row
     * {@code row} of out [rows, H, D].
     */
    void decodeAttention(Buffer q, int row, int heads, int kvHeads, int dim, Buffer kCache, Buffer vCache, int len,
                         Buffer out);

    /**
     * Causal GQA attention of the {@code rows} queries of q [rows, H, D] (a prefill chunk) over a cache whose first
     * {@code lenFirst + t} positions query t sees (the chunk's own keys already appended); as {@link #decodeAttention}
     * row by row, in one pass where the backend can. Writes out [rows, H, D].
     */
    void causalAttention(Buffer q, int rows, int heads, int kvHeads, int dim, Buffer kCache, Buffer vCache, int lenFirst,
                         Buffer out);

    /**
     * Router: {@code p = softmax(logits[t])} in fp32, the top k by probability (ties to the lower id), renormalised
     * to sum 1: ids [rows, k], weights [rows, k].
     */
    void route(Buffer logits, int rows, int experts, int k, Buffer ids, Buffer weights);

    /** Places the SwiGLU experts of one layer ([E] of w1 [I, h], w3 [I, h], w2 [h, I]) on the device. */
    ExpertSet experts(Tensor[] w1, Tensor[] w3, Tensor[] w2);

    /** Frees the device memory of a set made by {@link #experts} (an expert shard unloading experts); idempotent. */
    default void release(ExpertSet set) {}

    /**
     * For each pair (t, j): {@code out[t * k + j] = W2_e (SiLU(W1_e x_t) * (W3_e x_t))}, e = ids[t * k + j}; each
     * chosen expert's weights are read once per step. act [rows * k, I] is scratch; out [rows * k, h].
     */
    void runExperts(ExpertSet set, Buffer x, int rows, int k, Buffer ids, Buffer act, Buffer out);

    /** Which matrix of a SwiGLU expert: gate W1 [I, h], up W3 [I, h], down W2 [h, I]. */
    enum ExpertWeight { W1, W3, W2 }

    /** {@code y[n, :] = x[n, :] . W^T} with W the {@code which} matrix of expert {@code expert} of the set. */
    void expertProduct(ExpertSet set, ExpertWeight which, int expert, Buffer x, int n, Buffer y);

    /** {@code dst[i, :] = src[index[indexOff + i], :]} for i < n, rows of {@code dim} elements. */
    void gatherRows(Buffer src, int dim, Buffer index, int indexOff, int n, Buffer dst);

    /** {@code dst[index[indexOff + i], :] = src[i, :]} for i < n (distinct indices), rows of {@code dim} elements. */
    void scatterRows(Buffer src, int dim, Buffer index, int indexOff, int n, Buffer dst);

    /** {@code g = SiLU(g) * u} on the first n elements. */
    void siluMul(Buffer g, Buffer u, long n);

    /** Whether {@link #groupedExperts} runs on this device (else callers run the per-expert pieces above). */
    default boolean groupsExperts() { return false; }

    /**
     * The SwiGLU experts of one set over pairs grouped by expert (a prefill chunk, a shard's batch), in a launch per
     * stage rather than per expert: for each group g < groups and each row i of the grouped order in
     * [first[g], first[g] + count[g]): {@code pairs[pairIndex[i], :] = W2_e (SiLU(W1_e x_j) * (W3_e x_j))} with
     * e = slot[g] and j = tokenRow[i]. No gather or scatter pass: rows are read and written through the indices.
     *
     * @param rows  the grouped order's length: tokenRow and pairIndex hold at least this many, and every group's rows
     *              lie below it
     * @param x     [> max tokenRow, h]
     * @param act   scratch [rows, I] (row i for grouped row i)
     * @param pairs [> max pairIndex, h]; rows not named by pairIndex are left as they were
     */
    default void groupedExperts(ExpertSet set, int groups, int[] slot, int[] first, int[] count, int[] tokenRow,
                                int[] pairIndex, int rows, Buffer x, Buffer act, Buffer pairs) {
        throw new UnsupportedOperationException("no grouped expert kernels on this device");
    }

    /**
     * As {@link #groupedExperts(ExpertSet, int, int[], int[], int[], int[], int[], int, Buffer, Buffer, Buffer)} for a
     * layer's stacked set (expert e at slot e), every pair p < rows * k with ids[p] >= 0, the grouping done on the
     * device from the router's ids [rows, k] (no trip of the ids to the host, so no wait for the device): pairs[p] =
     * Expert_{ids[p]}(x[p / k]); rows of id -1 are left as they were. act [rows * k, I] is scratch.
     */
    default void groupedExperts(ExpertSet set, Buffer ids, int rows, int k, Buffer x, Buffer act, Buffer pairs) {
        throw new UnsupportedOperationException("no grouped expert kernels on this device");
    }

    // ---- prefill routing on the device (-Dlightmesh.prefill.deviceRoute) ----------------------------------------------

    /**
     * Whether {@link #routeAndGroup} and {@link #groupedExpertsRouted} run here for a router of {@code experts} experts,
     * top {@code k} (a prefill chunk then enqueues with no trip of the ids to the host and no table written per layer).
     */
    default boolean routesOnDevice(int experts, int k) { return false; }

    /** The int elements of {@link #routeAndGroup}'s table for {@code rows} rows. */
    default long routeTableLength(int rows, int experts, int k) {
        throw new UnsupportedOperationException("no prefill routing on this device");
    }

    /**
     * {@link #route} (ids, weights [rows, k] equal to its), and the pairs grouped by expert (by expert, then pair index)
     * into {@code table} [{@link #routeTableLength}] for {@link #groupedExpertsRouted}: counts, offsets and the tiles
     * computed on the device.
     */
    default void routeAndGroup(Buffer logits, int rows, int experts, int k, Buffer ids, Buffer weights, Buffer table) {
        throw new UnsupportedOperationException("no prefill routing on this device");
    }

    /**
     * As {@link #groupedExperts(ExpertSet, Buffer, int, int, Buffer, Buffer, Buffer)} for a layer's stacked set from
     * the table {@link #routeAndGroup} wrote for these rows: pairs[p] = Expert_{ids[p]}(x[p / k]); act [rows * k, I].
     */
    default void groupedExpertsRouted(ExpertSet set, Buffer table, int rows, int k, Buffer x, Buffer act, Buffer pairs) {
        throw new UnsupportedOperationException("no prefill routing on this device");
    }

    /**
     * As {@link #write(Buffer, int[], int)}, without waiting where the device can: {@code src} is copied at the call,
     * the transfer enqueued behind what is there.
     */
    default void writeAsync(Buffer dst, int[] src, int n) { write(dst, src, n); }

    /** {@code x[off .. off + n) = 0}, enqueued (a fresh sequence's states); the default writes zeros from the host. */
    default void zero(Buffer x, long off, long n) {
        float[] z = new float[(int) Math.min(n, 1 << 20)];
        for (long at = 0; at < n; at += z.length) write(x, off + at, z, 0, (int) Math.min(z.length, n - at));
    }

    /**
     * Blocking transfers and finishes so far (each waits for the queue to drain: a prefill counts them), or -1 where
     * not counted.
     */
    default long hostSyncs() { return -1; }

    /** Reads int32 elements {@code [0, n)} (the router's expert ids, to group a prefill chunk's rows by expert). */
    void read(Buffer src, int[] dst, int n);

    /**
     * {@code out[r] =} the index of the largest of row r's {@code V} logits, r < rows ({@code logits [rows, V]}), as
     * {@link io.lightmesh.engine.generate.Sampler#argmax}: ties to the lowest index, a NaN never chosen (a row whose
     * first logit is NaN gives 0). Greedy decoding reads these {@code rows} ints instead of {@code rows * V} logits.
     * This default reads the logits back and scans them on the host; a device overrides it with a kernel.
     */
    default void argmaxRows(Buffer logits, int rows, int V, Buffer out) {
        float[] all = new float[rows * V];
        read(logits, 0, all, 0, all.length);
        int[] ids = new int[rows];
        for (int r = 0; r < rows; r++) ids[r] = io.lightmesh.engine.generate.Sampler.argmax(all, r * V, V);
        write(out, ids, rows);
    }

    /**
     * A buffer over elements [off, off + length) of {@code parent}, sharing its memory (a pool's slot); off must be a
     * multiple of {@link #viewAlignment()}. Closing the view leaves the parent alone.
     */
    default Buffer view(Buffer parent, long off, long length) {
        throw new UnsupportedOperationException("no buffer views on this device");
    }

    /** The element multiple a {@link #view}'s offset must be. */
    default long viewAlignment() { return 1; }

    /** The fused decode step's kernels (few launches a step), or null where the device has none. */
    default FusedDecode fused() { return null; }

    /** Kernel launches so far (benchmarks and tests count them per step), or -1 where not counted. */
    default long launches() { return -1; }

    /** The decode kernel set this device runs ("v2", "v3 (...)"; benchmarks print it), or null where it has none. */
    default String decodeKernelSet() { return null; }

    /** The decode products' form ("CUDA-core matrix-vector kernels", "tensor cores, split ..."), or null where none. */
    default String decodeProducts() { return null; }

    /**
     * Per-kernel times of the launches since the last call (then reset), where the device profiles them
     * (-Dlightmesh.opencl.profile=events or =true on the OpenCL device); null where it does not.
     *
     * @param table the printable table (one line a kernel: launches, total and per-launch microseconds, GB/s)
     * @param launches the launches timed
     * @param kernelNanos the sum of their times
     * @param spanNanos with device-clock events, the sum over the queue's syncs of first kernel start to last kernel
     *                  end (kernelNanos / spanNanos: how busy the device was); -1 where not measured
     */
    record KernelTimes(String table, long launches, long kernelNanos, long spanNanos) {}

    default KernelTimes kernelTimes() { return null; }

    /** Waits until every enqueued operation has finished (benchmarks). */
    void finish();

    /**
     * Hands what is enqueued to the device without waiting: a forward pass calls it between layers so that the
     * device starts on the first layers while the host still enqueues the rest. The default does nothing.
     */
    default void flush() {}
}
