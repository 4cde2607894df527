package io.lightmesh.engine.backend;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link VectorOps} against {@link ReferenceOps}: every op on fresh random inputs, with ragged shapes (dims that are
 * not multiples of the vector width, token counts 1/3/17, partial lightning blocks, a cache offset, GQA groups
 * 1/2/4) and F32/BF16/F16 weights. Outputs are poisoned with NaN before each run so a skipped element fails, and
 * softmax caches carry NaN rows past the valid length so a read beyond it fails.
 *
 * <p>Tolerance: both backends read bit-identical weights (bf16/f16 widening is exact) and compute in fp32, so they
 * differ only in summation order (vector lanes, fused multiply-add, online softmax): the largest error must stay
 * within {@value #TOL} of the largest |expected value|. End to end through the model, {@value #MODEL_TOL}.
 */
class VectorOpsTest {
    static final double TOL = 1e-5;
    static final double MODEL_TOL = 1e-4;

    /** More threads than this machine has cores, so tasks really interleave; the reference runs alone. */
    static final VectorOps ops = new VectorOps(3);
    static final ReferenceOps ref = new ReferenceOps();

    @AfterAll
    static void close() { ops.close(); }

    // ------------------------------------------------------------------------------------------------- matmul

    static final int[][] MATMUL_SHAPES = {{1, 1}, {7, 5}, {50, 37}, {33, 100}, {16, 16}, {64, 768}, {130, 257}, {9, 1000}};
    static final int[] TOKENS = {1, 2, 3, 5, 8, 17, 33, 90};

    @ParameterizedTest
    @EnumSource(DType.class)
    void matmulMatchesReference(DType dtype) {
        SplittableRandom rnd = new SplittableRandom(dtype.ordinal());
        for (int[] shape : MATMUL_SHAPES) {
            Tensor w = randomTensor(rnd, dtype, shape[0], shape[1]);
            for (int n : TOKENS) {
                float[] x = gaussian(rnd, n * shape[1]);
                float[] expected = new float[n * shape[0]], actual = poisoned(n * shape[0]);
                ref.matmul(x, n, w, expected);
                ops.matmul(x, n, w, actual);
                assertClose(expected, actual, TOL, dtype + " " + Arrays.toString(shape) + " n=" + n);
            }
        }
    }

    @Test
    void matmulOnOneThreadMatchesReference() {
        SplittableRandom rnd = new SplittableRandom(11);
        try (VectorOps single = new VectorOps(1)) {
            Tensor w = randomTensor(rnd, DType.BF16, 130, 257);
            for (int n : new int[]{1, 3, 17}) {
                float[] x = gaussian(rnd, n * 257), expected = new float[n * 130], actual = poisoned(n * 130);
                ref.matmul(x, n, w, expected);
                single.matmul(x, n, w, actual);
                assertClose(expected, actual, TOL, "one thread n=" + n);
            }
        }
    }

    /** The vector f16 widening against Float.float16ToFloat for all 65,536 bit patterns, NaN payloads included. */
    @Test
    void f16WideningIsExactForEveryBitPattern() {
        MemorySegment seg = MemorySegment.ofArray(new byte[65536 * 2]);
        ValueLayout.OfShort le = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < 65536; i++) seg.set(le, 2L * i, (short) i);
        float[] got = new float[65536];
        WeightKernels.toFloats(seg, DType.F16, 0, got, 0, 65536);
        for (int i = 0; i < 65536; i++) {
            int want = Float.floatToRawIntBits(Float.float16ToFloat((short) i));
            assertEquals(want, Float.floatToRawIntBits(got[i]), "f16 bits 0x" + Integer.toHexString(i));
        }
    }

    /** The softmax's polynomial exp against Math.exp: 2 ulp-ish (3e-7 relative) on [-87, 88], 0 at -inf. */
    @Test
    void vectorExpIsAccurate() {
        int lanes = DenseKernels.L;
        float[] x = new float[lanes], y = new float[lanes];
        double worst = 0;
        for (int i = 0; i < 2_000_000; i += lanes) {
            for (int j = 0; j < lanes; j++) x[j] = -87f + 175f * (i + j) / 2_000_000f;
            DenseKernels.exp(jdk.incubator.vector.FloatVector.fromArray(DenseKernels.F, x, 0)).intoArray(y, 0);
            for (int j = 0; j < lanes; j++) worst = Math.max(worst, Math.abs(y[j] - Math.exp(x[j])) / Math.exp(x[j]));
        }
        assertTrue(worst < 3e-7, "worst relative error " + worst);
        Arrays.fill(x, Float.NEGATIVE_INFINITY);
        DenseKernels.exp(jdk.incubator.vector.FloatVector.fromArray(DenseKernels.F, x, 0)).intoArray(y, 0);
        for (float v : y) assertEquals(0f, v);
    }

    // ------------------------------------------------------------------------------------- lightning attention

    @ParameterizedTest
    @ValueSource(ints = {16, 20, 64})
    void lightningPrefillMatchesReference(int D) {
        SplittableRandom rnd = new SplittableRandom(D);
        for (int heads : new int[]{1, 2, 4}) {
            for (int block : new int[]{16, 256}) {
                for (int n : new int[]{1, 3, 17, 53, 300}) {
                    for (boolean fromEmpty : new boolean[]{true, false}) {
                        int HD = heads * D;
                        float[] q = activations(rnd, n * HD), k = activations(rnd, n * HD), v = activations(rnd, n * HD);
                        float[] decay = decays(rnd, heads);
                        // a non-empty state stands for a sequence already at start > 0
                        float[] state = fromEmpty ? new float[heads * D * D] : gaussian(rnd, heads * D * D);
                        float[] expState = state.clone(), actState = state.clone();
                        float[] expected = new float[n * HD], actual = poisoned(n * HD);
                        ref.lightningPrefill(q, k, v, n, heads, D, decay, block, expState, expected);
                        ops.lightningPrefill(q, k, v, n, heads, D, decay, block, actState, actual);
                        String what = "H=" + heads + " D=" + D + " block=" + block + " n=" + n + " empty=" + fromEmpty;
                        assertClose(expected, actual, TOL, what + " out");
                        assertClose(expState, actState, TOL, what + " state");
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {16, 20, 64})
    void lightningDecodeMatchesReference(int D) {
        SplittableRandom rnd = new SplittableRandom(100 + D);
        for (int heads : new int[]{1, 4}) {
            for (int batch : new int[]{1, 3}) {
                int HD = heads * D;
                float[] decay = decays(rnd, heads);
                float[][] expStates = new float[batch][], actStates = new float[batch][];
                for (int b = 0; b < batch; b++) {
                    expStates[b] = gaussian(rnd, heads * D * D);
                    actStates[b] = expStates[b].clone();
                }
                for (int step = 0; step < 3; step++) {
                    float[] q = activations(rnd, batch * HD), k = activations(rnd, batch * HD), v = activations(rnd, batch * HD);
                    float[] expected = new float[batch * HD], actual = poisoned(batch * HD);
                    ref.lightningDecode(q, k, v, batch, heads, D, decay, expStates, expected);
                    ops.lightningDecode(q, k, v, batch, heads, D, decay, actStates, actual);
                    String what = "H=" + heads + " D=" + D + " B=" + batch + " step " + step;
                    assertClose(expected, actual, TOL, what + " out");
                    for (int b = 0; b < batch; b++) assertClose(expStates[b], actStates[b], TOL, what + " state " + b);
                }
            }
        }
    }

    // --------------------------------------------------------------------------------------- softmax attention

    @ParameterizedTest
    @ValueSource(ints = {16, 20, 64})
    void softmaxAttentionMatchesReference(int D) {
        SplittableRandom rnd = new SplittableRandom(200 + D);
        int[][] headShapes = {{4, 4}, {4, 2}, {4, 1}, {8, 2}}; // GQA groups 1, 2, 4, 4
        for (int[] hs : headShapes) {
            int heads = hs[0], kv = hs[1], HD = heads * D, KVD = kv * D;
            for (int n : new int[]{1, 3, 17, 200}) {
                for (int start : new int[]{0, 5, 300}) {
                    int T = start + n + 7;
                    float[] kCache = gaussian(rnd, T * KVD), vCache = gaussian(rnd, T * KVD);
                    Arrays.fill(kCache, (start + n) * KVD, T * KVD, Float.NaN); // rows past the valid ones
                    Arrays.fill(vCache, (start + n) * KVD, T * KVD, Float.NaN);
                    float[] q = gaussian(rnd, n * HD);
                    float[] expected = new float[n * HD], actual = poisoned(n * HD);
                    ref.softmaxAttention(q, n, heads, kv, D, kCache, vCache, start, expected);
                    ops.softmaxAttention(q, n, heads, kv, D, kCache, vCache, start, actual);
                    assertClose(expected, actual, TOL, "H=" + heads + " KV=" + kv + " D=" + D + " n=" + n + " start=" + start);
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------------- end to end

    @TempDir static Path dir;

    /**
     * A tiny synthetic model (block 16 in HF's dialect, block 256 in M1's) run with each backend: prefill logits at
     * rows across block boundaries, then batched decode of two sequences, must agree within MODEL_TOL.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "BF16"})
    void modelLogitsMatchReference(DType dtype) throws Exception {
        for (boolean m1 : new boolean[]{false, true}) {
            Path d = dir.resolve(dtype + "-" + m1);
            SyntheticCheckpoint.write(d, SyntheticCheckpoint.Shape.tiny(), dtype, 5, m1);
            int[] prompt = new SplittableRandom(9).ints(m1 ? 300 : 53, 0, 512).toArray();
            int[] rows = m1 ? new int[]{0, 255, 256, 299} : new int[]{0, 15, 16, 40, 52};
            try (MiniMaxModel a = MiniMaxModel.load(d, ref); MiniMaxModel b = MiniMaxModel.load(d, ops)) {
                SequenceState[] sa = {a.newState(), a.newState()}, sb = {b.newState(), b.newState()};
                float[][] la = a.prefill(sa[0], prompt, rows), lb = b.prefill(sb[0], prompt, rows);
                for (int i = 0; i < rows.length; i++) assertClose(la[i], lb[i], MODEL_TOL, dtype + " m1=" + m1 + " prefill row " + rows[i]);
                int[] shortPrompt = Arrays.copyOf(prompt, 7);
                a.prefill(sa[1], shortPrompt);
                b.prefill(sb[1], shortPrompt);
                int[] tokens = {3, 77};
                for (int step = 0; step < 3; step++) {
                    float[][] da = a.decode(List.of(sa), tokens), db = b.decode(List.of(sb), tokens);
                    for (int s = 0; s < 2; s++) assertClose(da[s], db[s], MODEL_TOL, dtype + " m1=" + m1 + " decode step " + step + " seq " + s);
                    tokens = new int[]{argmax(da[0]), argmax(da[1])};
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------------------- helpers

    static Tensor randomTensor(SplittableRandom rnd, DType dtype, int out, int in) {
        MemorySegment seg = MemorySegment.ofArray(new byte[out * in * dtype.bytes()]);
        ValueLayout.OfFloat f32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        ValueLayout.OfShort i16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < out * in; i++) {
            float f = (float) (gaussian(rnd) / Math.sqrt(in));
            switch (dtype) {
                case F32 -> seg.set(f32, 4L * i, f);
                case BF16 -> seg.set(i16, 2L * i, Tensor.floatToBf16(f));
                case F16 -> seg.set(i16, 2L * i, Float.floatToFloat16(f));
            }
        }
        return new Tensor("w", dtype, new long[]{out, in}, seg);
    }

    static float[] gaussian(SplittableRandom rnd, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) gaussian(rnd);
        return v;
    }

    /** Post-SiLU-like activations: mostly positive, O(1). */
    static float[] activations(SplittableRandom rnd, int n) {
        float[] v = gaussian(rnd, n);
        for (int i = 0; i < n; i++) v[i] = v[i] / (1f + (float) Math.exp(-v[i]));
        return v;
    }

    /** Decays spanning the real range: slopes 2^(-8(h+1)/H) times a layer factor in (0, 1]. */
    static float[] decays(SplittableRandom rnd, int heads) {
        float[] d = new float[heads];
        double factor = 0.05 + 0.95 * rnd.nextDouble();
        for (int h = 0; h < heads; h++) d[h] = (float) (Math.pow(2, -8.0 * (h + 1) / heads) * factor);
        return d;
    }

    static double gaussian(SplittableRandom rnd) {
        return Math.sqrt(-2 * Math.log(1 - rnd.nextDouble())) * Math.cos(2 * Math.PI * rnd.nextDouble());
    }

    static float[] poisoned(int n) {
        float[] a = new float[n];
        Arrays.fill(a, Float.NaN);
        return a;
    }

    static int argmax(float[] a) {
        int best = 0;
        for (int i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
        return best;
    }

    /** max |expected - actual| <= tol * max |expected|; NaN anywhere fails. */
    static void assertClose(float[] expected, float[] actual, double tol, String what) {
        assertEquals(expected.length, actual.length, what + ": length");
        double scale = 0, maxErr = 0;
        int worst = -1;
        for (float v : expected) scale = Math.max(scale, Math.abs(v));
        for (int i = 0; i < expected.length; i++) {
            double err = Math.abs((double) expected[i] - actual[i]);
            if (Double.isNaN(err)) {
                throw new AssertionError(what + ": element " + i + " expected " + expected[i] + " got " + actual[i]);
            }
            if (err > maxErr) { maxErr = err; worst = i; }
        }
        double rel = maxErr / Math.max(scale, 1e-30);
        assertTrue(rel <= tol, what + ": max error " + maxErr + " at " + worst + " is " + rel
                + " of max |value| " + scale + " > " + tol);
    }
}
