package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.assertClose;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.poisoned;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.random;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.weight;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The tensor-core products ({@code tensorcore.cl}) and the probe that chooses them. On an NVIDIA GPU the products
 * are held to the host product of the same bf16-rounded inputs (1e-4: the products are exact, only the summation
 * order differs); elsewhere (PoCL in CI) the probe must say no, for the vendor, and products stay on the fp32 GEMM.
 * Where the real kernels cannot run, the product tests build {@code tensorcore.cl} with {@code -D TC_EMULATE} (the
 * mma instruction done in plain OpenCL C, fragments exchanged through local memory), so that the tiling, fragment
 * loads and epilogue are checked on PoCL too. The probe's build-and-check is also run with stand-in sources on any
 * device: one the compiler rejects, one that computes a wrong product, one that computes the right one.
 */
class OpenClTensorCoreTest {
    /** Shapes (n, in, out): ragged against the 128 x 128 x 32 tiles, k from one tile to many, n from the GEMM's 33. */
    private static final int[][] SHAPES = {
            {33, 64, 40}, {128, 128, 128}, {129, 96, 257}, {200, 136, 300}, {300, 2048, 136}, {1024, 512, 1024},
            {64, 8, 24}};

    private static ResidentOps r() {
        ResidentOps r = OpenClTestSupport.ops().resident();
        Assumptions.assumeTrue(r != null, "resident path off (-Dlightmesh.opencl.resident=false)");
        return r;
    }

    private static boolean nvidia(ResidentOps r) { return TensorCores.nvidia(r.vendor()); }

    /** Runs {@code body} with products on tensor cores: the real kernels, or their emulation where there are none. */
    private static void onTensorCores(ResidentOps r, Runnable body) {
        boolean real = r.tensorCores().available();
        if (!real) {
            Assumptions.assumeFalse(nvidia(r) && TensorCores.wanted(), "NVIDIA without tensor cores: " + r.tensorCores());
            TensorCores.Verdict emu = r.tryTensorCores("#define TC_EMULATE\n" + TensorCores.source());
            assertTrue(emu.available(), "emulated tensor-core kernels: " + emu);
        }
        try {
            assertTrue(r.useTensorCores(true));
            body.run();
        } finally {
            if (!real) r.dropTensorCores();
            r.useTensorCores(false);
        }
    }

    @Test
    void probeVerdictFollowsTheDevice() {
        ResidentOps r = r();
        TensorCores.Verdict v = r.tensorCores();
        System.out.println("tensor cores on " + r.deviceName() + " (" + r.vendor() + "): " + v);
        if (!TensorCores.wanted()) {
            assertFalse(v.available());
        } else if (nvidia(r)) {
            // an H100/H200 through NVIDIA's OpenCL: the probe must pass (its reason says why when it does not)
            assertTrue(v.available(), v.reason());
        } else {
            assertFalse(v.available(), "tensor cores on a non-NVIDIA device: " + v);
            assertTrue(v.reason().contains("not NVIDIA"), v.reason());
            assertFalse(r.useTensorCores(true), "a device without the kernels cannot switch them on");
        }
    }

    @Test
    void tensorCoreProductsMatchTheBf16RoundedHostProduct() {
        ResidentOps r = r();
        boolean real = r.tensorCores().available();
        onTensorCores(r, () -> {
            Random rnd = new Random(3);
            for (int[] s : SHAPES) {
                if (!real && (long) s[0] * s[1] * s[2] > 20_000_000L) continue;  // emulation: the small shapes
                for (DType dt : new DType[]{DType.F32, DType.BF16}) {
                    int n = s[0], in = s[1], out = s[2];
                    Tensor w = weight(rnd, dt, out, in);
                    float[] x = random(rnd, n * in, 1f), y = poisoned(n * out);
                    r.matmul(x, n, w, y);
                    float[] wv = new float[out * in];
                    for (int i = 0; i < wv.length; i++) wv[i] = w.get(i);
                    String what = "tensor-core product " + dt + " n=" + n + " in=" + in + " out=" + out;
                    assertClose(what, TensorCores.reference(x, wv, n, in, out), y, n * out);
                    // and against the fp32 product: the bf16 rounding of activations costs about 2^-9 relative
                    float[] ref = new float[n * out];
                    new ReferenceOps().matmul(x, n, w, ref);
                    assertTrue(relErr(ref, y) < 1e-2, what + " vs fp32: " + relErr(ref, y));
                }
            }
        });
    }

    /** Stacked experts address their weight by offset: the tensor-core path must take it (expert 1 of 3). */
    @Test
    void tensorCoreExpertProductsTakeTheWeightOffset() {
        ResidentOps r = r();
        Random rnd = new Random(5);
        int n = 70, in = 96, out = 136;
        Tensor[] w1 = new Tensor[3], w3 = new Tensor[3], w2 = new Tensor[3];
        for (int e = 0; e < 3; e++) {
            w1[e] = weight(rnd, DType.BF16, out, in);
            w3[e] = weight(rnd, DType.BF16, out, in);
            w2[e] = weight(rnd, DType.BF16, in, out);
        }
        float[] x = random(rnd, n * in, 1f), y = poisoned(n * out);
        onTensorCores(r, () -> {
            try (DeviceOps.Buffer bx = r.floats((long) n * in); DeviceOps.Buffer by = r.floats((long) n * out)) {
                DeviceOps.ExpertSet set = r.experts(w1, w3, w2);
                r.write(bx, 0, x, 0, x.length);
                r.write(by, 0, y, 0, y.length);
                r.expertProduct(set, DeviceOps.ExpertWeight.W3, 1, bx, n, by);
                r.read(by, 0, y, 0, y.length);
            }
        });
        float[] wv = new float[out * in];
        for (int i = 0; i < wv.length; i++) wv[i] = w3[1].get(i);
        assertClose("expert 1 W3 on tensor cores", TensorCores.reference(x, wv, n, in, out), y, n * out);
    }

    /**
     * Causal prefill attention on tensor cores (flash_tc_D) against the fp32 reference: Q, K, P and V are rounded to
     * bf16, so the bound is bf16's (relative L2 <= 1e-2, measured 1.6e-3 to 2.3e-3 on PoCL; fp32 kernels hold 1e-4). Shapes cross the 128-row query tiles
     * and 64-key tiles, start from an empty cache and after a prefix, with GQA groups of 1 to 8.
     */
    @Test
    void flashAttentionOnTensorCoresMatchesTheReference() {
        ResidentOps r = r();
        Random rnd = new Random(21);
        // {H, KV, D, cached before the chunk, chunk rows}
        int[][] shapes = {{8, 2, 64, 0, 37}, {16, 4, 128, 300, 70}, {4, 4, 32, 1, 1}, {4, 2, 32, 5, 130},
                {8, 1, 128, 0, 200}, {2, 2, 64, 63, 65}};
        onTensorCores(r, () -> {
            for (int[] sh : shapes) {
                int H = sh[0], KV = sh[1], D = sh[2], before = sh[3], n = sh[4], total = before + n;
                float[] k = random(rnd, total * KV * D, 1f), v = random(rnd, total * KV * D, 1f);
                float[] q = random(rnd, n * H * D, 1f), ref = new float[n * H * D], got = poisoned(n * H * D);
                new ReferenceOps().softmaxAttention(q, n, H, KV, D, k, v, before, ref);
                try (DeviceOps.Buffer qb = r.upload(q); DeviceOps.Buffer kb = r.upload(k); DeviceOps.Buffer vb = r.upload(v);
                     DeviceOps.Buffer ob = r.upload(got)) {
                    r.causalAttention(qb, n, H, KV, D, kb, vb, before + 1, ob);
                    r.read(ob, 0, got, 0, got.length);
                }
                for (int i = 0; i < got.length; i++) assertTrue(Float.isFinite(got[i]), "element " + i + " is " + got[i]);
                double err = relErr(ref, got);
                System.out.println("flash attention on tensor cores " + java.util.Arrays.toString(sh) + ": relative L2 " + err);
                assertTrue(err <= 1e-2, "flash attention " + java.util.Arrays.toString(sh) + ": relative L2 " + err);
            }
        });
    }

    /**
     * The lightning recurrence over a chunk in block form on tensor cores (lin_kv, lin_states, lin_out) against the
     * fp32 scan (tensor cores off, 1e-4 to the reference elsewhere): outputs and the state after, from a zero and a
     * non-zero state, chunks of one token, of a partial block, of many blocks; bf16's bound (relative L2 <= 1e-2).
     */
    @Test
    void lightningBlocksOnTensorCoresMatchTheScan() {
        ResidentOps r = r();
        Random rnd = new Random(23);
        int[][] shapes = {{2, 32, 1}, {4, 32, 63}, {2, 64, 130}, {3, 128, 200}, {16, 128, 64}};  // {H, D, rows}
        for (int[] sh : shapes) {
            int H = sh[0], D = sh[1], n = sh[2];
            float[] qkv = random(rnd, n * 3 * H * D, 1f), s0 = random(rnd, H * D * D, 0.5f), decay = new float[H];
            for (int h = 0; h < H; h++) decay[h] = 0.01f + 0.4f * h / H;
            float[] refO = poisoned(n * H * D), refS = new float[H * D * D];
            float[] gotO = poisoned(n * H * D), gotS = new float[H * D * D];
            scan(r, false, qkv, s0, decay, H, D, n, refO, refS);
            onTensorCores(r, () -> scan(r, true, qkv, s0, decay, H, D, n, gotO, gotS));
            for (float[] a : new float[][]{gotO, gotS}) {
                for (int i = 0; i < a.length; i++) assertTrue(Float.isFinite(a[i]), "element " + i + " is " + a[i]);
            }
            double eo = relErr(refO, gotO), es = relErr(refS, gotS);
            System.out.println("lightning blocks on tensor cores " + java.util.Arrays.toString(sh) + ": relative L2 out "
                    + eo + ", state " + es);
            assertTrue(eo <= 1e-2 && es <= 1e-2, "lightning blocks " + java.util.Arrays.toString(sh) + ": " + eo + ", " + es);
        }
    }

    private static void scan(ResidentOps r, boolean tc, float[] qkv, float[] s0, float[] decay, int H, int D, int n,
                             float[] out, float[] state) {
        if (!tc) r.useTensorCores(false);
        try (DeviceOps.Buffer bq = r.upload(qkv); DeviceOps.Buffer bs = r.upload(s0); DeviceOps.Buffer bd = r.upload(decay);
             DeviceOps.Buffer bo = r.upload(out)) {
            r.lightningScan(bq, n, H, D, bd, bs, bo);
            r.read(bo, 0, out, 0, out.length);
            r.read(bs, 0, state, 0, state.length);
        }
    }

    /** Rows whose length is not a multiple of 8 stay on the fp32 GEMM even with tensor cores on (1e-4 to fp32). */
    @Test
    void raggedRowLengthsStayOnTheFp32Gemm() {
        ResidentOps r = r();
        Random rnd = new Random(9);
        int n = 64, in = 70, out = 50;
        Tensor w = weight(rnd, DType.F32, out, in);
        float[] x = random(rnd, n * in, 1f), y = poisoned(n * out), ref = new float[n * out];
        try {
            r.useTensorCores(true);
            r.matmul(x, n, w, y);
        } finally {
            r.useTensorCores(false);
        }
        new ReferenceOps().matmul(x, n, w, ref);
        assertClose("in % 8 != 0", ref, y, n * out);
    }

    // ---- the probe's build and check, with stand-in sources (any device) -----------------------------------------

    /**
     * Plain OpenCL C under the tensor-core products' names: y = bf16(x) . bf16(W)^T, times {@code scale}; the flash
     * attention kernels are the real ones, emulated.
     */
    private static String standIn(float scale) {
        return "#define TC_EMULATE\n#define TC_NO_GEMM\n" + TensorCores.source() + """
                inline float rb(float f) { uint u = as_uint(f); return as_float((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u); }
                #define K(SUF, WT, LD) \\
                __kernel void gemm_tc_##SUF(__global const WT* w, long wOff, __global const float* x, long xOff, \\
                        __global float* y, long yOff, int n, int in, int out) { \\
                    int tiles = (out + 127) / 128, o0 = (get_group_id(0) % tiles) * 128, m0 = (get_group_id(0) / tiles) * 128; \\
                    for (int e = get_local_id(0); e < 128 * 128; e += get_local_size(0)) { \\
                        int m = m0 + e / 128, o = o0 + e % 128; \\
                        if (m >= n || o >= out) continue; \\
                        float s = 0.0f; \\
                        for (int k = 0; k < in; k++) s += rb(x[xOff + (long) m * in + k]) * rb(LD(w[wOff + (long) o * in + k])); \\
                        y[yOff + (long) m * out + o] = SCALE * s; \\
                    } \\
                }
                #define F32(v) (v)
                #define BF16(v) as_float(((uint) (v)) << 16)
                K(f32, float, F32)
                K(bf16, ushort, BF16)
                """.replace("SCALE", scale + "f");
    }

    @Test
    void probeRejectsWhatTheCompilerRejectsOrWhatComputesWrongly() {
        ResidentOps r = r();
        boolean had = r.tensorCores().available();
        try {
            TensorCores.Verdict broken = r.tryTensorCores("__kernel void gemm_tc_f32( { this is not OpenCL C");
            assertFalse(broken.available());
            assertTrue(broken.reason().contains("compiler rejected"), broken.reason());
            assertFalse(r.useTensorCores(true));

            TensorCores.Verdict wrong = r.tryTensorCores(standIn(1.01f));
            assertFalse(wrong.available());
            assertTrue(wrong.reason().contains("disagrees with the host"), wrong.reason());
            assertFalse(r.useTensorCores(true));

            TensorCores.Verdict right = r.tryTensorCores(standIn(1f));
            assertTrue(right.available(), right.reason());
            assertTrue(r.useTensorCores(true));
            Random rnd = new Random(11);
            Tensor w = weight(rnd, DType.BF16, 40, 48);
            float[] x = random(rnd, 50 * 48, 1f), y = poisoned(50 * 40);
            r.matmul(x, 50, w, y);  // through the stand-in: the switch reaches product()
            float[] wv = new float[40 * 48];
            for (int i = 0; i < wv.length; i++) wv[i] = w.get(i);
            assertClose("stand-in tensor-core product", TensorCores.reference(x, wv, 50, 48, 40), y, 50 * 40);
        } finally {
            if (had) assertTrue(r.tryTensorCores(TensorCores.source()).available(), "restoring the real kernels");
            else r.dropTensorCores();
            r.useTensorCores(false);
        }
    }

    @Test
    void bf16RoundingIsNearestEven() {
        assertEquals(1.0f, TensorCores.roundBf16(1.0f));
        assertEquals(Float.intBitsToFloat(0x3f800000), TensorCores.roundBf16(Float.intBitsToFloat(0x3f808000))); // tie, even down
        assertEquals(Float.intBitsToFloat(0x3f820000), TensorCores.roundBf16(Float.intBitsToFloat(0x3f818000))); // tie, even up
        assertEquals(Float.intBitsToFloat(0x3f810000), TensorCores.roundBf16(Float.intBitsToFloat(0x3f808001)));
        assertTrue(Float.isNaN(TensorCores.roundBf16(Float.NaN)));
    }

    private static double relErr(float[] ref, float[] got) {
        double d = 0, n = 0;
        for (int i = 0; i < ref.length; i++) {
            d += (got[i] - ref[i]) * (double) (got[i] - ref[i]);
            n += (double) ref[i] * ref[i];
        }
        return Math.sqrt(d / n);
    }
}
