package io.lightmesh.engine.model;

/** Elementwise pieces of the forward pass: cheap next to the matrix products, so they stay in plain Java. */
final class Functions {
    private Functions() {}

    /** RMSNorm over each row of x [n, dim] into out: w * x / sqrt(mean(x^2) + eps). */
    static void rmsNorm(float[] x, int n, int dim, float[] w, double eps, float[] out) {
        for (int t = 0; t < n; t++) {
            int o = t * dim;
            double ss = 0;
            for (int i = 0; i < dim; i++) ss += (double) x[o + i] * x[o + i];
            float inv = (float) (1.0 / Math.sqrt(ss / dim + eps));
            for (int i = 0; i < dim; i++) out[o + i] = w[i] * (x[o + i] * inv);
        }
    }

    static float silu(float x) { return x / (1f + (float) Math.exp(-x)); }

    static float sigmoid(float x) { return 1f / (1f + (float) Math.exp(-x)); }

    static void siluInPlace(float[] x, int len) {
        for (int i = 0; i < len; i++) x[i] = silu(x[i]);
    }

    /** h = alpha * residual + beta * update, row by row over len values. */
    static void scaledResidual(float[] residual, float alpha, float[] update, float beta, int len, float[] out) {
        for (int i = 0; i < len; i++) out[i] = alpha * residual[i] + beta * update[i];
    }
}
