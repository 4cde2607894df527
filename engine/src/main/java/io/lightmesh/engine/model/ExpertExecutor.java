package io.lightmesh.engine.model;

/**
 * The port through which a MoE layer has its routed tokens computed: in-process ({@link LocalExperts}) or by
 * remote expert shards (the mesh). Implementations must be safe for concurrent calls on different layers.
 */
public interface ExpertExecutor {

    /**
     * out[t] = sum_j weights[t*k + j] * Expert_{experts[t*k + j]}(x[t]) for the n rows of x.
     *
     * @param layer   decoder layer index
     * @param x       [n, hidden] normalised hidden states
     * @param experts [n, k] chosen expert ids
     * @param weights [n, k] renormalised router weights
     * @param out     [n, hidden], overwritten
     */
    void run(int layer, float[] x, int n, int k, int[] experts, float[] weights, float[] out);

    /**
     * {@link #run} started on {@code pool}, for the device path's micro-batches: one micro-batch's experts compute
     * while the other's attention runs. A wrapper that carries the caller's context (a trace) across threads
     * overrides it.
     */
    default java.util.concurrent.CompletableFuture<Void> runAsync(int layer, float[] x, int n, int k, int[] experts,
                                                                  float[] weights, float[] out,
                                                                  java.util.concurrent.Executor pool) {
        return java.util.concurrent.CompletableFuture.runAsync(() -> run(layer, x, n, k, experts, weights, out), pool);
    }

    /**
     * The in-process experts behind this executor, or null when they are computed elsewhere (shards). The device
     * path computes local experts itself (weights on the device) and then calls {@link #routed} instead of
     * {@link #run}, so a wrapper that only observes calls must answer its inner executor's experts.
     */
    default LocalExperts local() { return null; }

    /**
     * Told the routing of a layer that was computed without {@link #run} (the device path with {@link #local()}
     * experts): experts [n, k]. Observers (counters) override it; the default ignores it.
     */
    default void routed(int layer, int[] experts, int n, int k) {}

    /** Whether {@link #routed} does anything: the device path then reads the router's ids back to tell it. */
    default boolean observesRouting() { return false; }
}
