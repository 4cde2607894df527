package io.lightmesh.engine.model;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The vectorised SiLU / sigmoid paths give the scalar formulas' exact bits. */
class FunctionsTest {

    /** 4M values over every scale plus the specials; ragged length so the scalar tail runs too. */
    static float[] inputs() {
        SplittableRandom rnd = new SplittableRandom(1);
        float[] x = new float[4_000_003];
        float[] specials = {0f, -0f, 1f, -1f, 88.7f, -88.7f, 103f, -103f, 110f, -110f, 1e-30f, -1e-30f,
                Float.MAX_VALUE, -Float.MAX_VALUE, Float.MIN_VALUE, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN};
        System.arraycopy(specials, 0, x, 0, specials.length);
        for (int i = specials.length; i < x.length; i++) {
            x[i] = switch (i % 3) {
                case 0 -> (float) (rnd.nextGaussian() * 4);              // typical activations
                case 1 -> (float) ((rnd.nextDouble() - 0.5) * 240);       // across the whole exp range
                default -> Float.intBitsToFloat(rnd.nextInt());            // any bit pattern
            };
        }
        return x;
    }

    @Test
    void vectorSiluIsBitIdentical() {
        float[] x = inputs(), y = x.clone();
        Functions.siluInPlace(y, y.length);
        for (int i = 0; i < x.length; i++) {
            assertEquals(Float.floatToIntBits(Functions.silu(x[i])), Float.floatToIntBits(y[i]), "silu(" + x[i] + ")");
        }
    }

    @Test
    void vectorSwiGluAndGateAreBitIdentical() {
        float[] x = inputs(), u = inputs(), g = x.clone(), o = u.clone();
        Functions.siluMul(g, u, g.length);
        Functions.mulSigmoid(o, x, o.length);
        for (int i = 0; i < x.length; i++) {
            assertEquals(Float.floatToIntBits(Functions.silu(x[i]) * u[i]), Float.floatToIntBits(g[i]), "silu*u at " + x[i]);
            assertEquals(Float.floatToIntBits(u[i] * Functions.sigmoid(x[i])), Float.floatToIntBits(o[i]), "gate at " + x[i]);
        }
    }
}
