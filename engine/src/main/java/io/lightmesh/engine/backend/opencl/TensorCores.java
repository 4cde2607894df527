package io.lightmesh.engine.backend.opencl;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Locale;

/**
 * Whether a device's matrix products run on NVIDIA tensor cores ({@code tensorcore.cl}: inline PTX {@code mma.sync}
 * m16n8k16, bf16 in, fp32 accumulate), and the pieces of the probe that decides it at start: the setting, the vendor
 * test, the kernel source and the check of a small product against the host.
 *
 * <p>Setting: {@code -Dlightmesh.opencl.tensorCores=auto} (default: on where the probe passes), {@code false} (fp32
 * products everywhere, the 1e-4 path). The probe tries the build only on NVIDIA devices (the asm is PTX); there a
 * compiler that rejects it, or a product that disagrees with the host, leaves the fp32 GEMM in place, with the
 * reason logged.
 *
 * <p>Precision: activations (and fp32 weights) are rounded to bf16 (nearest even) before the product; bf16 weights
 * are used as stored. Products of two bf16 values are exact in fp32, so against the same rounded inputs the result
 * differs from the host's only by summation order ({@link #CHECK_TOL}).
 */
public final class TensorCores {
    /** Relative L2 error allowed in the probe's check against the host product of the same bf16-rounded inputs. */
    static final double CHECK_TOL = 1e-4;
    /** The probe's product: ragged against the 128 x 128 x 32 tiles on every side (rows, columns and k tiles). */
    static final int CHECK_N = 136, CHECK_IN = 72, CHECK_OUT = 136;

    /** The probe's verdict: {@code available} when the kernels built and passed the check; why not otherwise. */
    public record Verdict(boolean available, String reason) {
        static Verdict no(String reason) { return new Verdict(false, reason); }

        @Override
        public String toString() { return (available ? "available: " : "not used: ") + reason; }
    }

    private TensorCores() {}

    /**
     * A form of the bf16-weight GEMM of {@code tensorcore.cl}: {@code v1} (gemm_tc_bf16: fragments loaded 32 bits at a
     * time, global loads through registers, two buffers) or a v2 form (ldmatrix from XOR-swizzled tiles, cp.async
     * copies in a multi-stage pipeline, activations rounded to bf16 by to_bf16 first). {@code threads} work-items a
     * group compute a {@code tileRows} x {@code tileCols} tile of the product.
     */
    public record Gemm(String name, String kernel, int threads, int tileRows, int tileCols) {}

    /** The v1 GEMM (also every product with fp32 weights, whatever the setting). */
    public static final Gemm V1 = new Gemm("v1", "gemm_tc_bf16", 256, 128, 128);

    /** The v2 forms, the default first: the same kernel body with other tiles (see tensorcore.cl). */
    public static final java.util.List<Gemm> V2 = java.util.List.of(
            new Gemm("v2", "gemm_tc2_bf16", 256, 128, 128),      // 8 warps of 64 x 32, 3 stages
            new Gemm("v2w4", "gemm_tc2w4_bf16", 128, 128, 128),  // 4 warps of 64 x 64, 3 stages
            new Gemm("v2wide", "gemm_tc2wide_bf16", 256, 128, 256), // 8 warps of 64 x 64, 2 stages
            new Gemm("v2s", "gemm_tc2s_bf16", 128, 64, 128),        // 4 warps of 32 x 64, 3 stages
            new Gemm("v2n", "gemm_tc2n_bf16", 128, 128, 64));        // 4 warps of 64 x 32, 4 stages

    /**
     * The v2 form for products that would leave most of the device idle with the current form's tiles: v2n (128 x 64
     * tiles, 4 stages). On the H200 (call 2) it ran an expert's 1024 x 1024 x 2048 product (64 tiles of v2) at 105
     * TFLOP/s against v2's 77 and v2s's 96, while at 128 tiles (1024 x 2048 x 1024) v2 was ahead (126 against 104).
     */
    static final String SMALL = "v2n";

    /**
     * -Dlightmesh.opencl.gemmSmall: true (default) runs a product whose tiles of the current v2 form would reach at
     * most half the compute units on {@link #SMALL} instead; false keeps one form for every product.
     */
    static boolean smallTilesWanted() {
        return !"false".equalsIgnoreCase(System.getProperty("lightmesh.opencl.gemmSmall", "true").trim());
    }

    /**
     * The setting -Dlightmesh.opencl.gemm: v2 (default), v2w4, v2wide, v2s, v2n or v1. A v2 form is used only where the probe
     * checked it; else v1, with the reason logged.
     */
    static Gemm wantedGemm() {
        String v = System.getProperty("lightmesh.opencl.gemm", "v2").trim().toLowerCase(Locale.ROOT);
        if (v.isEmpty() || v.equals("v2")) return V2.getFirst();
        if (v.equals("v1")) return V1;
        for (Gemm g : V2) if (g.name().equals(v)) return g;
        throw new IllegalArgumentException("-Dlightmesh.opencl.gemm=" + v + ": use v1, v2, v2w4, v2wide, v2s or v2n");
    }

    /** The GEMM form named {@code name} (v1 or a v2 form). */
    static Gemm gemm(String name) {
        if (V1.name().equals(name)) return V1;
        for (Gemm g : V2) if (g.name().equals(name)) return g;
        throw new IllegalArgumentException("no GEMM form '" + name + "': use v1, v2, v2w4, v2wide, v2s or v2n");
    }

    /** The setting: false when -Dlightmesh.opencl.tensorCores=false (or off / no), true otherwise. */
    static boolean wanted() {
        String v = System.getProperty("lightmesh.opencl.tensorCores", "auto").trim().toLowerCase(Locale.ROOT);
        return switch (v) {
            case "false", "off", "no", "0" -> false;
            case "auto", "true", "on", "yes", "1", "" -> true;
            default -> throw new IllegalArgumentException("-Dlightmesh.opencl.tensorCores=" + v + ": use auto or false");
        };
    }

    /** Whether the vendor string names NVIDIA (the only devices whose compiler takes PTX asm). */
    public static boolean nvidia(String vendor) {
        return vendor != null && vendor.toUpperCase(Locale.ROOT).contains("NVIDIA");
    }

    static String source() {
        try (InputStream in = TensorCores.class.getResourceAsStream("tensorcore.cl")) {
            if (in == null) throw new OpenClException("tensorcore.cl is missing from the engine jar");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new OpenClException("cannot read tensorcore.cl: " + e.getMessage(), e);
        }
    }

    /** The grouped expert kernels on tensor cores, built after tensorcore.cl (on its helpers) in the same program. */
    static String expertsSource() { return ResidentOps.resource("experts_tc.cl"); }

    /** A [rows, cols] weight of these values (bf16: rounded to nearest even) for the start-up checks. */
    static io.lightmesh.engine.tensor.Tensor tensor(String name, float[] values, int rows, int cols, boolean bf16) {
        if (!bf16) return io.lightmesh.engine.tensor.Tensor.ofFloats(name, values, rows, cols);
        java.lang.foreign.MemorySegment seg = java.lang.foreign.MemorySegment.ofArray(new byte[values.length * 2]);
        var s16 = java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < values.length; i++) seg.set(s16, 2L * i, io.lightmesh.engine.tensor.Tensor.floatToBf16(values[i]));
        return new io.lightmesh.engine.tensor.Tensor(name, io.lightmesh.engine.tensor.DType.BF16, new long[]{rows, cols}, seg);
    }

    /**
     * What {@code DeviceOps.groupedExperts} computes, on the host in double: for each group's rows i,
     * {@code pairs[pairIndex[i]] = W2_e (SiLU(W1_e x_j) * (W3_e x_j))}, e = slot[g], j = tokenRow[i]; pairs [rows, h]
     * (pairIndex < rows), rows not written left 0. Weights [E][out * in] as given (no rounding).
     */
    static float[] groupedReference(float[] x, int h, int I, float[][] w1, float[][] w3, float[][] w2, int groups,
                                    int[] slot, int[] first, int[] count, int[] tokenRow, int[] pairIndex, int rows) {
        float[] pairs = new float[rows * h];
        double[] act = new double[I];
        for (int g = 0; g < groups; g++) {
            int e = slot[g];
            for (int i = first[g]; i < first[g] + count[g]; i++) {
                int xo = tokenRow[i] * h;
                for (int o = 0; o < I; o++) {
                    double a = 0, b = 0;
                    for (int k = 0; k < h; k++) {
                        a += (double) x[xo + k] * w1[e][o * h + k];
                        b += (double) x[xo + k] * w3[e][o * h + k];
                    }
                    act[o] = a / (1 + Math.exp(-a)) * b;
                }
                for (int o = 0; o < h; o++) {
                    double y = 0;
                    for (int k = 0; k < I; k++) y += act[k] * w2[e][o * I + k];
                    pairs[pairIndex[i] * h + o] = (float) y;
                }
            }
        }
        return pairs;
    }

    /** fp32 to bf16 and back, round to nearest even (as the kernels round activations). */
    public static float roundBf16(float f) {
        if (Float.isNaN(f)) return f;
        int u = Float.floatToRawIntBits(f);
        u = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
        return Float.intBitsToFloat(u);
    }

    /** y[m, o] = sum_k bf16(x[m, k]) bf16(w[o, k]) in double: what the tensor-core product computes. */
    static float[] reference(float[] x, float[] w, int n, int in, int out) {
        float[] y = new float[n * out];
        for (int m = 0; m < n; m++) {
            for (int o = 0; o < out; o++) {
                double s = 0;
                for (int k = 0; k < in; k++) s += (double) roundBf16(x[m * in + k]) * roundBf16(w[o * in + k]);
                y[m * out + o] = (float) s;
            }
        }
        return y;
    }

    /** Relative L2 error allowed in the flash attention check: Q, K, P and V in bf16 (about 2e-3 seen). */
    static final double FLASH_CHECK_TOL = 1e-2;

    /** Null when {@code got} is within {@link #CHECK_TOL} of {@code ref} (relative L2, all finite), else why not. */
    static String mismatch(float[] ref, float[] got) { return mismatch(ref, got, CHECK_TOL); }

    /** Null when {@code got} is within {@code tol} of {@code ref} (relative L2, all finite), else why not. */
    static String mismatch(float[] ref, float[] got, double tol) {
        double diff = 0, norm = 0;
        for (int i = 0; i < ref.length; i++) {
            if (!Float.isFinite(got[i])) return "element " + i + " is " + got[i];
            double d = got[i] - ref[i];
            diff += d * d;
            norm += (double) ref[i] * ref[i];
        }
        double rel = Math.sqrt(diff / Math.max(norm, 1e-30));
        return rel <= tol ? null : String.format(Locale.ROOT, "relative error %.3g > %.0e", rel, tol);
    }
}
