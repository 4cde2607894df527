package io.lightmesh.engine.model;

/**
 * Rotary position embedding, NeoX style, over the first {@code rotaryDim} dims of each head: pairs (i, i + r/2),
 * inv_freq_i = theta^(-2i/r); dims past rotaryDim pass unchanged.
 *
 * <p>Angles are computed as the reference does (fp32 inv_freq times fp32 position), so logits match it at long
 * positions too, where an fp64 angle would drift from what the model was trained with.
 */
final class Rope {
    final int headDim, rotaryDim;
    final float[] invFreq; // [rotaryDim / 2]

    Rope(int headDim, int rotaryDim, double theta) {
        this.headDim = headDim;
        this.rotaryDim = rotaryDim;
        this.invFreq = new float[rotaryDim / 2];
        for (int i = 0; i < invFreq.length; i++) {
            float exponent = (float) (2 * i) / rotaryDim;
            invFreq[i] = 1f / (float) Math.pow(theta, exponent);
        }
    }

    /** Rotates {@code heads} heads of x [heads, headDim] starting at offset {@code off}, for token position pos. */
    void apply(float[] x, int off, int heads, long pos) {
        int half = rotaryDim / 2;
        float p = (float) pos;
        for (int i = 0; i < half; i++) {
            float angle = p * invFreq[i];
            float cos = (float) Math.cos(angle), sin = (float) Math.sin(angle);
            for (int h = 0; h < heads; h++) {
                int a = off + h * headDim + i, b = a + half;
                float x1 = x[a], x2 = x[b];
                // q' = q cos + rotate_half(q) sin, rotate_half([x1, x2]) = [-x2, x1]
                x[a] = x1 * cos - x2 * sin;
                x[b] = x2 * cos + x1 * sin;
            }
        }
    }
}
