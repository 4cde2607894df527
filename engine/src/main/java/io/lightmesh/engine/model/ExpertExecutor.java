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
}
