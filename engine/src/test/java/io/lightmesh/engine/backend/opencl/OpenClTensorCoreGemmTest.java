package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Random;
import java.util.function.Consumer;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.assertClose;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.poisoned;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.random;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.weight;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The v2 tensor-core GEMM forms of {@code tensorcore.cl} (ldmatrix from XOR-swizzled tiles, cp.async pipeline, bf16
 * activations from to_bf16) and the probe's choice between them and v1. Every form is held to the host product of
 * the same bf16-rounded inputs at 1e-4 (products of bf16 values are exact in fp32; only the summation order
 * differs): on an NVIDIA GPU the real kernels, elsewhere (PoCL in CI) their emulation ({@code TC_EMULATE}: cp.async a
 * plain copy, ldmatrix and mma done in OpenCL C with the same fragment layout), so that the tile indexing, the
 * swizzle, the stage ring and the ragged edges are checked everywhere.
 */
class OpenClTensorCoreGemmTest {
    /**
     * (n, in, out): ragged against the 128-row and 128/256-column tiles and the 32-wide k tiles (one k tile, a
     * partial one, more k tiles than stages), n from the GEMM's 33 rows, out small.
     */
    private static final int[][] SMALL = {
            {33, 64, 40}, {64, 8, 24}, {128, 128, 128}, {129, 96, 257}, {200, 136, 300}, {40, 264, 16}, {257, 40, 130}};
    /** The 1.25B model's projections (hidden 2048, qkv 3 x 2048, expert intermediate 1024) on ragged row counts. */
    private static final int[][] M1 = {{160, 2048, 6144}, {300, 2048, 2048}, {200, 2048, 1024}, {97, 1024, 2048}};

    private static ResidentOps r() {
        ResidentOps r = OpenClTestSupport.ops().resident();
        Assumptions.assumeTrue(r != null, "resident path off (-Dlightmesh.opencl.resident=false)");
        return r;
    }

    /**
     * Runs {@code body} once per v2 form with tensor cores on and that form current: the real kernels where the probe
     * passed them, their emulation where the device has no tensor cores. The argument says whether they are real.
     */
    private static void eachForm(ResidentOps r, Consumer<Boolean> body) {
        boolean real = r.tensorCores().available(), small = r.smallTiles();
        String before = r.gemm();
        if (!real) {
            Assumptions.assumeFalse(TensorCores.nvidia(r.vendor()) && TensorCores.wanted(),
                    "NVIDIA without tensor cores: " + r.tensorCores());
            TensorCores.Verdict emu = r.tryTensorCores("#define TC_EMULATE\n" + TensorCores.source());
            assertTrue(emu.available(), "emulated tensor-core kernels: " + emu);
        }
        try {
            assertTrue(r.useTensorCores(true));
            r.smallTiles(false);  // each form as itself, whatever the product's size
            for (TensorCores.Gemm g : TensorCores.V2) {
                assertTrue(r.useGemm(g.name()), g.name() + " did not pass the probe: " + r.tensorCores() + " " + r.gemms());
                assertEquals(g.name(), r.gemm());
                body.accept(real);
            }
        } finally {
            r.smallTiles(small);
            if (!real) r.dropTensorCores();
            else r.useGemm(before);
            r.useTensorCores(false);
        }
    }

    /**
     * With v2 current, a product whose 128 x 128 tiles would reach at most half the compute units runs on v2n (128 x
     * 64 tiles, 4 stages), a larger one on v2; both the bf16-rounded host product.
     */
    @Test
    void smallProductsTakeTheSmallTileForm() {
        ResidentOps r = r();
        boolean real = r.tensorCores().available(), wasSmall = r.smallTiles();
        String before = r.gemm();
        if (!real) {
            Assumptions.assumeFalse(TensorCores.nvidia(r.vendor()) && TensorCores.wanted(), r.tensorCores().reason());
            assertTrue(r.tryTensorCores("#define TC_EMULATE\n" + TensorCores.source()).available());
        }
        try {
            assertTrue(r.useTensorCores(true) && r.useGemm("v2"));
            r.smallTiles(true);
            int cu = r.computeUnits();
            Assumptions.assumeTrue(cu >= 2, "one compute unit: no product is small against it");
            // n = 100 (one row of tiles); out: 1 tile of 128 x 128 (2 <= cu on any device), or cu / 2 + 1 tiles
            int small = 128, big = 128 * (cu / 2 + 1);
            assertEquals("v2n", r.formFor(100, small).name());
            assertEquals("v2", r.formFor(100, big).name());
            r.smallTiles(false);
            assertEquals("v2", r.formFor(100, small).name());
            r.smallTiles(true);
            Random rnd = new Random(37);
            Tensor w = weight(rnd, DType.BF16, small, 72);
            float[] x = random(rnd, 100 * 72, 1f), y = poisoned(100 * small);
            r.matmul(x, 100, w, y);
            assertClose("small product on v2n", TensorCores.reference(x, values(w), 100, 72, small), y, 100 * small);
        } finally {
            r.smallTiles(wasSmall);
            if (!real) r.dropTensorCores();
            else r.useGemm(before);
            r.useTensorCores(false);
        }
    }

    private static float[] values(Tensor w) {
        float[] v = new float[(int) w.size()];
        for (int i = 0; i < v.length; i++) v[i] = w.get(i);
        return v;
    }

    @Test
    void everyV2FormMatchesTheBf16RoundedHostProduct() {
        ResidentOps r = r();
        Random rnd = new Random(31);
        record Case(int n, int in, int out, Tensor w, float[] x, float[] ref) {}
        List<Case> cases = new java.util.ArrayList<>();
        boolean real = r.tensorCores().available();
        for (int[][] set : new int[][][]{SMALL, M1}) {
            for (int[] s : set) {
                // emulation (PoCL): up to ~12M multiply-adds a product, so that the suite stays quick
                if (!real && (long) s[0] * s[1] * s[2] > 12_000_000L) continue;
                Tensor w = weight(rnd, DType.BF16, s[2], s[1]);
                float[] x = random(rnd, s[0] * s[1], 1f);
                cases.add(new Case(s[0], s[1], s[2], w, x, TensorCores.reference(x, values(w), s[0], s[1], s[2])));
            }
        }
        eachForm(r, isReal -> {
            for (Case c : cases) {
                float[] y = poisoned(c.n * c.out);
                r.matmul(c.x, c.n, c.w, y);
                assertClose("GEMM " + r.gemm() + (isReal ? "" : " (emulated)") + " n=" + c.n + " in=" + c.in + " out="
                        + c.out, c.ref, y, c.n * c.out);
            }
        });
    }

    /** Stacked experts: the weight offset (expert 2 of 3) reaches the cp.async copies, and rows below 128. */
    @Test
    void v2TakesTheExpertWeightOffset() {
        ResidentOps r = r();
        Random rnd = new Random(33);
        int n = 45, in = 96, out = 136;
        Tensor[] w1 = new Tensor[3], w3 = new Tensor[3], w2 = new Tensor[3];
        for (int e = 0; e < 3; e++) {
            w1[e] = weight(rnd, DType.BF16, out, in);
            w3[e] = weight(rnd, DType.BF16, out, in);
            w2[e] = weight(rnd, DType.BF16, in, out);
        }
        float[] x = random(rnd, n * in, 1f);
        float[] ref = TensorCores.reference(x, values(w1[2]), n, in, out);
        eachForm(r, isReal -> {
            float[] y = poisoned(n * out);
            try (DeviceOps.Buffer bx = r.floats((long) n * in); DeviceOps.Buffer by = r.floats((long) n * out)) {
                DeviceOps.ExpertSet set = r.experts(w1, w3, w2);
                r.write(bx, 0, x, 0, x.length);
                r.write(by, 0, y, 0, y.length);
                r.expertProduct(set, DeviceOps.ExpertWeight.W1, 2, bx, n, by);
                r.read(by, 0, y, 0, y.length);
            }
            assertClose("expert 2 W1 on GEMM " + r.gemm(), ref, y, n * out);
        });
    }

    /** fp32 weights have no v2 form: with v2 current they run v1's gemm_tc_f32, still the bf16-rounded product. */
    @Test
    void fp32WeightsStayOnV1() {
        ResidentOps r = r();
        Random rnd = new Random(35);
        int n = 70, in = 64, out = 72;
        Tensor w = weight(rnd, DType.F32, out, in);
        float[] x = random(rnd, n * in, 1f);
        float[] ref = TensorCores.reference(x, values(w), n, in, out);
        eachForm(r, isReal -> {
            float[] y = poisoned(n * out);
            r.matmul(x, n, w, y);
            assertClose("fp32 weights with GEMM " + r.gemm() + " current", ref, y, n * out);
        });
    }

    // ---- the probe's choice ----------------------------------------------------------------------------------------

    /** Plain OpenCL C under the v2 kernels' names: y = scale * x . W^T from bf16 x (what to_bf16 wrote). */
    private static String v2StandIn(String base, float scale) {
        return base + """
                #define K2S(NAME) \\
                __kernel void NAME(__global const ushort* w, long wOff, __global const ushort* x, long xOff, \\
                        __global float* y, long yOff, int n, int in, int out) { \\
                    for (long e = get_global_id(0); e < (long) n * out; e += get_global_size(0)) { \\
                        int m = e / out, o = e % out; \\
                        float s = 0.0f; \\
                        for (int k = 0; k < in; k++) \\
                            s += as_float(((uint) x[xOff + (long) m * in + k]) << 16) * as_float(((uint) w[wOff + (long) o * in + k]) << 16); \\
                        y[yOff + e] = SCALE * s; \\
                    } \\
                }
                K2S(gemm_tc2_bf16)
                K2S(gemm_tc2w4_bf16)
                K2S(gemm_tc2wide_bf16)
                K2S(gemm_tc2s_bf16)
                K2S(gemm_tc2n_bf16)
                """.replace("SCALE", scale + "f");
    }

    /** The emulated source without the v2 kernels (v1, attention, lightning and to_bf16 kept). */
    private static String withoutV2() {
        String src = TensorCores.source();
        int a = src.indexOf("GEMM_TC2(gemm_tc2_bf16");
        int b = src.indexOf("#endif", a);
        assertTrue(a > 0 && b > a, "tensorcore.cl instantiates the v2 forms under #ifndef TC_NO_GEMM");
        return "#define TC_EMULATE\n" + src.substring(0, a) + src.substring(b);
    }

    @Test
    void probeFallsBackToV1WhenAV2FormIsMissingOrWrong() {
        ResidentOps r = r();
        boolean had = r.tensorCores().available();
        String before = r.gemm();
        try {
            TensorCores.Verdict missing = r.tryTensorCores(withoutV2());
            assertTrue(missing.available(), missing.reason());
            assertEquals("v1", r.gemm(), missing.reason());
            assertEquals(List.of("v1"), r.gemms());
            assertTrue(missing.reason().contains("v2 not used: the check product failed"), missing.reason());
            assertFalse(r.useGemm("v2"));

            // a compiler that rejects only v2 (its asm or pragmas): the probe builds again without it and keeps v1
            String src = "#define TC_EMULATE\n" + TensorCores.source();
            int v2 = src.indexOf("#ifndef TC_NO_GEMM2");
            assertTrue(v2 > 0, "tensorcore.cl guards v2 with TC_NO_GEMM2");
            int eol = src.indexOf('\n', v2) + 1;
            TensorCores.Verdict rejected = r.tryTensorCores(src.substring(0, eol) + "this is not OpenCL C;\n"
                    + src.substring(eol));
            assertTrue(rejected.available(), rejected.reason());
            assertEquals(List.of("v1"), r.gemms());
            assertTrue(rejected.reason().contains("v2 did not build"), rejected.reason());

            TensorCores.Verdict wrong = r.tryTensorCores(v2StandIn(withoutV2(), 1.01f));
            assertTrue(wrong.available(), wrong.reason());
            assertEquals("v1", r.gemm(), wrong.reason());
            assertTrue(wrong.reason().contains("gemm_tc2_bf16 disagrees with the host"), wrong.reason());

            TensorCores.Verdict right = r.tryTensorCores(v2StandIn(withoutV2(), 1f));
            assertTrue(right.available(), right.reason());
            assertEquals(TensorCores.wantedGemm().name(), r.gemm(), right.reason());
            assertEquals(List.of("v1", "v2", "v2w4", "v2wide", "v2s", "v2n"), r.gemms());
            assertTrue(r.useGemm("v1") && r.useGemm("v2wide"));
            assertEquals("v2wide", r.gemm());
        } finally {
            if (had) {
                assertTrue(r.tryTensorCores(TensorCores.source()).available(), "restoring the real kernels");
                r.useGemm(before);
            } else {
                r.dropTensorCores();
            }
            r.useTensorCores(false);
        }
    }

    @Test
    void gemmSettingNamesAForm() {
        String old = System.getProperty("lightmesh.opencl.gemm");
        try {
            System.clearProperty("lightmesh.opencl.gemm");
            assertEquals("v2", TensorCores.wantedGemm().name());
            for (String v : new String[]{"v1", "v2", "v2w4", "v2wide", "v2s", "v2n"}) {
                System.setProperty("lightmesh.opencl.gemm", v);
                assertEquals(v, TensorCores.wantedGemm().name());
            }
            System.setProperty("lightmesh.opencl.gemm", "v3");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, TensorCores::wantedGemm);
            assertTrue(e.getMessage().contains("v1, v2, v2w4, v2wide, v2s or v2n"), e.getMessage());
        } finally {
            if (old == null) System.clearProperty("lightmesh.opencl.gemm");
            else System.setProperty("lightmesh.opencl.gemm", old);
        }
    }
}
