package io.lightmesh.engine.model;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.LongVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Elementwise pieces of the forward pass. They run on the calling thread between the backend's parallel matrix
 * products, so the exp-heavy ones (SiLU, sigmoid) are vectorised: in prefill their scalar {@code Math.exp} was a
 * quarter of the wall time of a small model. The vector path computes exactly what the scalar formulas below do
 * (the exp in double, rounded to float, then the same float operations), so results are bit for bit the same
 * except where a double exp lands within about 2^-50 of a float rounding boundary (once in ~10^8 values, 1 ulp).
 */
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
        int i = 0;
        for (; i <= len - FH.length(); i += FH.length()) {
            FloatVector v = FloatVector.fromArray(FH, x, i);
            v.div(expNeg(v).add(1f)).intoArray(x, i);
        }
        for (; i < len; i++) x[i] = silu(x[i]);
    }

    /** g[i] = silu(g[i]) * u[i]: the SwiGLU product. */
    static void siluMul(float[] g, float[] u, int len) {
        int i = 0;
        for (; i <= len - FH.length(); i += FH.length()) {
            FloatVector v = FloatVector.fromArray(FH, g, i);
            v.div(expNeg(v).add(1f)).mul(FloatVector.fromArray(FH, u, i)).intoArray(g, i);
        }
        for (; i < len; i++) g[i] = silu(g[i]) * u[i];
    }

    /** o[i] *= sigmoid(gate[i]): the lightning output gate. */
    static void mulSigmoid(float[] o, float[] gate, int len) {
        int i = 0;
        for (; i <= len - FH.length(); i += FH.length()) {
            FloatVector s = FloatVector.broadcast(FH, 1f).div(expNeg(FloatVector.fromArray(FH, gate, i)).add(1f));
            FloatVector.fromArray(FH, o, i).mul(s).intoArray(o, i);
        }
        for (; i < len; i++) o[i] *= sigmoid(gate[i]);
    }

    /** h = alpha * residual + beta * update, row by row over len values. */
    static void scaledResidual(float[] residual, float alpha, float[] update, float beta, int len, float[] out) {
        for (int i = 0; i < len; i++) out[i] = alpha * residual[i] + beta * update[i];
    }

    // ---- (float) Math.exp(-x), lane by lane -------------------------------------------------------------------

    private static final VectorSpecies<Double> DS = DoubleVector.SPECIES_PREFERRED;
    /** Floats with as many lanes as DS: each is widened to double, as the scalar formula does. */
    private static final VectorSpecies<Float> FH =
            VectorSpecies.of(float.class, VectorShape.forBitSize(DS.vectorBitSize() / 2));
    private static final double LOG2E = 1.4426950408889634, LN2_HI = 6.93147180369123816490e-01,
            LN2_LO = 1.90821492927058770002e-10, ROUND = 6755399441055744.0; // 1.5 * 2^52
    /** 1/j! for j = 13 down to 2: Taylor to degree 13 is within 1e-17 relative on |r| <= ln2/2. */
    private static final double[] TAYLOR = new double[12];

    static {
        for (int j = 13, t = 0; j >= 2; j--, t++) {
            double f = 1;
            for (int m = 2; m <= j; m++) f *= m;
            TAYLOR[t] = 1 / f;
        }
    }

    /**
     * (float) exp(-x) in double precision: -x = k ln2 + r, a degree-13 polynomial for e^r, 2^k in the exponent
     * bits. Arguments are clamped to +-110, past which the float result is already 0 or infinity; NaN stays NaN.
     */
    private static FloatVector expNeg(FloatVector x) {
        DoubleVector a = ((DoubleVector) x.convertShape(VectorOperators.F2D, DS, 0)).neg().max(-110.0).min(110.0);
        DoubleVector t = a.fma(DoubleVector.broadcast(DS, LOG2E), DoubleVector.broadcast(DS, ROUND));
        DoubleVector k = t.sub(ROUND);
        DoubleVector r = k.fma(DoubleVector.broadcast(DS, -LN2_HI), a);
        r = k.fma(DoubleVector.broadcast(DS, -LN2_LO), r);
        DoubleVector p = DoubleVector.broadcast(DS, TAYLOR[0]);
        for (int j = 1; j < TAYLOR.length; j++) p = p.fma(r, DoubleVector.broadcast(DS, TAYLOR[j]));
        p = p.fma(r, DoubleVector.broadcast(DS, 1.0)).fma(r, DoubleVector.broadcast(DS, 1.0)); // ... + r + 1
        LongVector scale = t.reinterpretAsLongs().sub(Double.doubleToRawLongBits(ROUND) - 1023).lanewise(VectorOperators.LSHL, 52);
        return (FloatVector) p.mul(scale.reinterpretAsDoubles()).convertShape(VectorOperators.D2F, FH, 0);
    }
}
