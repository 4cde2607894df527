package io.lightmesh.engine.bench;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.tensor.Tensor;

/**
 * A {@link TensorOps} decorator that adds up the wall time spent in each op, so the bench can say what dominates:
 * matrix products, lightning attention, softmax attention, or the plain-Java rest of the forward pass (the
 * difference to the total). One nanoTime pair per call, a few hundred calls a token: noise next to the ops.
 */
final class TimedOps implements TensorOps {
    enum Op { MATMUL, LIGHTNING, SOFTMAX }

    private final TensorOps inner;
    private final long[] nanos = new long[Op.values().length];

    TimedOps(TensorOps inner) { this.inner = inner; }

    long nanos(Op op) { return nanos[op.ordinal()]; }

    void reset() { java.util.Arrays.fill(nanos, 0); }

    @Override
    public String name() { return inner.name(); }

    @Override
    public void matmul(float[] x, int n, Tensor w, float[] y) {
        long t = System.nanoTime();
        inner.matmul(x, n, w, y);
        nanos[Op.MATMUL.ordinal()] += System.nanoTime() - t;
    }

    @Override
    public void lightningPrefill(float[] q, float[] k, float[] v, int n, int heads, int headDim, float[] decay,
                                 int blockSize, float[] state, float[] out) {
        long t = System.nanoTime();
        inner.lightningPrefill(q, k, v, n, heads, headDim, decay, blockSize, state, out);
        nanos[Op.LIGHTNING.ordinal()] += System.nanoTime() - t;
    }

    @Override
    public void lightningDecode(float[] q, float[] k, float[] v, int batch, int heads, int headDim, float[] decay,
                                float[][] states, float[] out) {
        long t = System.nanoTime();
        inner.lightningDecode(q, k, v, batch, heads, headDim, decay, states, out);
        nanos[Op.LIGHTNING.ordinal()] += System.nanoTime() - t;
    }

    @Override
    public void softmaxAttention(float[] q, int n, int heads, int kvHeads, int headDim, float[] kCache,
                                 float[] vCache, int start, float[] out) {
        long t = System.nanoTime();
        inner.softmaxAttention(q, n, heads, kvHeads, headDim, kCache, vCache, start, out);
        nanos[Op.SOFTMAX.ordinal()] += System.nanoTime() - t;
    }

    /** The inner backend's resident operations: a device-resident decode step is timed as a whole ("other"). */
    @Override
    public io.lightmesh.engine.backend.DeviceOps resident() { return inner.resident(); }

    @Override
    public void close() { inner.close(); }

    @Override
    public void preload(java.util.Collection<Tensor> weights) { inner.preload(weights); }
}
