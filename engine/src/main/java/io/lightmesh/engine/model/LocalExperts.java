package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;
import io.lightmesh.engine.weights.WeightStore;

import java.util.function.BiPredicate;

/**
 * SwiGLU experts computed in this process: {@code W2_e(SiLU(W1_e x) * (W3_e x))}, grouped so that one matrix
 * product serves every token routed to an expert in the step. An expert shard hosts the (layer, expert) pairs its
 * filter accepts; asking it for another is an error.
 */
public final class LocalExperts implements ExpertExecutor {
    private final ModelConfig config;
    private final TensorOps ops;
    private final WeightStore weights; // where load() maps a pair from
    final Tensor[][] w1, w2, w3; // [layer][expert]: [I, h], [h, I], [I, h]; null where not hosted

    public LocalExperts(ModelConfig config, WeightStore weights, TensorOps ops) {
        this(config, weights, ops, (layer, expert) -> true);
    }

    public LocalExperts(ModelConfig config, WeightStore weights, TensorOps ops, BiPredicate<Integer, Integer> hosts) {
        this.config = config;
        this.ops = ops;
        this.weights = weights;
        int L = config.numLayers(), E = config.numExperts();
        long h = config.hiddenSize(), I = config.intermediateSize();
        w1 = new Tensor[L][E];
        w2 = new Tensor[L][E];
        w3 = new Tensor[L][E];
        java.util.List<Tensor> hosted = new java.util.ArrayList<>();
        for (int l = 0; l < L; l++) {
            for (int e = 0; e < E; e++) {
                if (!hosts.test(l, e)) continue;
                String p = "model.layers." + l + ".block_sparse_moe.experts." + e + ".";
                w1[l][e] = weights.get(p + "w1.weight", I, h);
                w2[l][e] = weights.get(p + "w2.weight", h, I);
                w3[l][e] = weights.get(p + "w3.weight", I, h);
                hosted.addAll(java.util.List.of(w1[l][e], w3[l][e], w2[l][e]));
            }
        }
        ops.preload(hosted);
    }

    /**
     * The experts an expert shard computes, those {@code hosts} accepts: on the device ({@link DeviceExperts}, grouped
     * products, holdings following the predicate live) when {@code ops} has device-resident operations, else on the
     * host's arrays (this class). {@code -Dlightmesh.device.experts=false} keeps a device backend's shard on the host
     * path.
     */
    public static ExpertExecutor hosting(ModelConfig config, WeightStore weights, TensorOps ops,
                                         BiPredicate<Integer, Integer> hosts) {
        boolean device = ops.resident() != null
                && !"false".equalsIgnoreCase(System.getProperty("lightmesh.device.experts", "true"));
        return device ? new DeviceExperts(config, weights, ops.resident(), hosts) : new LocalExperts(config, weights, ops, hosts);
    }

    public boolean hosts(int layer, int expert) { return w1[layer][expert] != null; }

    /**
     * Hosts one more (layer, expert): maps its weights from the store and hands them to the ops (a device backend
     * places them now). False when already hosted. The caller sends no batch naming the pair before this returns
     * and publishes the pair through a happens-before edge (an expert shard's live set).
     */
    public synchronized boolean load(int layer, int expert) {
        if (w1[layer][expert] != null) return false;
        long h = config.hiddenSize(), I = config.intermediateSize();
        String p = "model.layers." + layer + ".block_sparse_moe.experts." + expert + ".";
        Tensor a = weights.get(p + "w1.weight", I, h), b = weights.get(p + "w2.weight", h, I), c = weights.get(p + "w3.weight", I, h);
        ops.preload(java.util.List.of(a, c, b));
        w1[layer][expert] = a;
        w2[layer][expert] = b;
        w3[layer][expert] = c;
        return true;
    }

    /**
     * Stops hosting (layer, expert) and answers its weights (w1, w3, w2), for a device backend to drop; empty when
     * not hosted. The caller has drained every batch naming the pair.
     */
    public synchronized java.util.List<Tensor> unload(int layer, int expert) {
        if (w1[layer][expert] == null) return java.util.List.of();
        java.util.List<Tensor> gone = java.util.List.of(w1[layer][expert], w3[layer][expert], w2[layer][expert]);
        w1[layer][expert] = null;
        w2[layer][expert] = null;
        w3[layer][expert] = null;
        return gone;
    }

    @Override
    public LocalExperts local() { return this; }

    @Override
    public void run(int layer, float[] x, int n, int k, int[] experts, float[] weights, float[] out) {
        int h = config.hiddenSize(), I = config.intermediateSize(), E = config.numExperts();
        java.util.Arrays.fill(out, 0, n * h, 0f);
        // group rows by expert so each expert's weights are read once per step
        int[] counts = new int[E];
        for (int i = 0; i < n * k; i++) counts[experts[i]]++;
        for (int e = 0; e < E; e++) {
            int m = counts[e];
            if (m == 0) continue;
            if (w1[layer][e] == null) {
                throw new IllegalArgumentException("expert " + e + " of layer " + layer + " is not hosted here");
            }
            int[] rows = new int[m];
            float[] gates = new float[m];
            float[] xe = new float[m * h];
            for (int i = 0, j = 0; i < n * k; i++) {
                if (experts[i] != e) continue;
                rows[j] = i / k;
                gates[j] = weights[i];
                System.arraycopy(x, rows[j] * h, xe, j * h, h);
                j++;
            }
            float[] g = new float[m * I], u = new float[m * I], d = new float[m * h];
            ops.matmul(xe, m, w1[layer][e], g);
            ops.matmul(xe, m, w3[layer][e], u);
            Functions.siluMul(g, u, g.length);
            ops.matmul(g, m, w2[layer][e], d);
            for (int j = 0; j < m; j++) {
                int ro = rows[j] * h, dof = j * h;
                for (int i = 0; i < h; i++) out[ro + i] += gates[j] * d[dof + i];
            }
        }
    }
}
