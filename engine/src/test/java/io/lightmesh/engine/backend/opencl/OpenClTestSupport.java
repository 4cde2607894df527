package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Shared by the OpenCL kernel tests: one backend per JVM, random inputs, NaN-poisoned outputs and the comparison
 * with {@link io.lightmesh.engine.backend.ReferenceOps}.
 *
 * <p>Without an OpenCL device the tests are skipped (JUnit assumption, with the reason) unless
 * {@code LIGHTMESH_REQUIRE_OPENCL=1} is set as an environment variable or system property: then they fail. The
 * device kind can be forced with {@code -Dlightmesh.opencl.preference=CPU_ONLY} (or GPU_ONLY, GPU_THEN_CPU).
 */
public final class OpenClTestSupport {
    /**
     * Tolerance of every comparison: ||out - ref||_2 / ||ref||_2 <= 1e-4 (fp32 with a different summation order
     * lands near 1e-6; bf16 weights are widened exactly, so they get the same bound), and no element further than
     * 1e-3 * max|ref| from the reference. NaN or infinity anywhere fails.
     */
    public static final double REL_TOL = 1e-4;
    public static final double ELEM_TOL = 1e-3;

    private static OpenClOps ops;
    private static OpenClException unavailable;

    private OpenClTestSupport() {}

    static boolean required() {
        String p = System.getProperty("LIGHTMESH_REQUIRE_OPENCL");
        if (p == null) p = System.getenv("LIGHTMESH_REQUIRE_OPENCL");
        return "1".equals(p) || "true".equalsIgnoreCase(p);
    }

    /** The shared backend, or the test is skipped (or fails, when OpenCL is required). */
    public static synchronized OpenClOps ops() {
        if (ops == null && unavailable == null) {
            try {
                ops = OpenClOps.create(OpenClOps.Preference.valueOf(
                        System.getProperty("lightmesh.opencl.preference", "GPU_THEN_CPU")));
                System.out.println("OpenCL tests run on " + ops.device());
                // the kernel and fixture tests hold fp32 products to 1e-4; OpenClTensorCoreTest turns tensor cores on
                ResidentOps r = ops.resident();
                if (r != null) {
                    System.out.println("tensor cores " + r.tensorCores() + "; off for the fp32 tests");
                    r.useTensorCores(false);
                }
            } catch (OpenClException e) {
                unavailable = e;
            }
        }
        if (ops == null) {
            if (required()) fail("LIGHTMESH_REQUIRE_OPENCL=1 but no OpenCL device works: " + unavailable.getMessage(), unavailable);
            Assumptions.abort("skipped, no OpenCL device (set LIGHTMESH_REQUIRE_OPENCL=1 to fail instead): "
                    + unavailable.getMessage());
        }
        return ops;
    }

    public static float[] random(Random rnd, int n, float scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (rnd.nextFloat() * 2f - 1f) * scale;
        return a;
    }

    public static float[] poisoned(int n) {
        float[] a = new float[n];
        Arrays.fill(a, Float.NaN);
        return a;
    }

    /** A random [rows, cols] weight stored as {@code dtype} (bf16: random floats rounded to nearest even). */
    public static Tensor weight(Random rnd, DType dtype, int rows, int cols) {
        float[] values = random(rnd, rows * cols, 1f);
        if (dtype == DType.F32) return Tensor.ofFloats("w", values, rows, cols);
        if (dtype != DType.BF16) throw new IllegalArgumentException(dtype.toString());
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * 2]);
        ValueLayout.OfShort s16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < values.length; i++) seg.set(s16, 2L * i, Tensor.floatToBf16(values[i]));
        return new Tensor("w", DType.BF16, new long[]{rows, cols}, seg);
    }

    /** Checks {@code got[0..n)} against {@code ref[0..n)} within the stated tolerance. */
    public static void assertClose(String what, float[] ref, float[] got, int n) {
        double diff = 0, norm = 0, maxRef = 0, maxErr = 0;
        int worst = -1;
        for (int i = 0; i < n; i++) {
            if (!Float.isFinite(got[i])) fail(what + ": element " + i + " is " + got[i] + " (unwritten or overflowed), reference " + ref[i]);
            double d = got[i] - ref[i];
            diff += d * d;
            norm += (double) ref[i] * ref[i];
            maxRef = Math.max(maxRef, Math.abs(ref[i]));
            if (Math.abs(d) > maxErr) {
                maxErr = Math.abs(d);
                worst = i;
            }
        }
        double rel = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-30);
        assertTrue(rel <= REL_TOL, what + ": relative L2 error " + rel + " > " + REL_TOL);
        assertTrue(maxErr <= ELEM_TOL * maxRef + 1e-30, what + ": element " + worst + " off by " + maxErr
                + " (reference " + (worst >= 0 ? ref[worst] : 0) + ", max |ref| " + maxRef + ")");
    }
}
