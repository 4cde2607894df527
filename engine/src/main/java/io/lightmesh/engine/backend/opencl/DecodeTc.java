package io.lightmesh.engine.backend.opencl;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;

/**
 * The decode products on NVIDIA tensor cores ({@code decode_tc.cl}, built after resident.cl as a program of its own):
 * the fused step's projections, output projection, LM head and the experts' gate + up and down for 1..16 rows as
 * mma.sync m16n8k16 with 16 weight rows as A and the batch as B, so each weight is read once for all rows. The
 * setting, the forms and the start-up check of every kernel against its v2 twin (resident.cl's CUDA-core form).
 *
 * <p>Setting {@code -Dlightmesh.decode.tc}: {@code off} (the v2 kernels), {@code split} (the default: activations as a
 * bf16 hi + lo pair, two mma a fragment: ~1e-5 relative, within the fp32 fixtures' 1e-4) or {@code bf16} (activations
 * rounded to bf16: ~1e-3 relative). bf16 weights only (fp32-weight products stay on v2), rows of a multiple of 8.
 * Only on NVIDIA (the mma is PTX asm): elsewhere, or where the build or the check fails, the v2 kernels run and the
 * start-up line says why. Tests build the kernels on any device ({@link ResidentOps#tryDecodeTc}): off NVIDIA the
 * mma is emulated in plain OpenCL C with the same fragments.
 */
final class DecodeTc {
    /** Weight rows a work-group of the kernels (decode_tc.cl's DTC_ROWS). */
    static final int ROWS = 16;
    /** Rows of x one launch takes (two N tiles of 8). */
    static final int MAX_ROWS = 16;
    /** Relative L2 error allowed against the v2 twin in the start-up check: split ~1e-5 seen, bf16 ~1e-3. */
    static final double SPLIT_TOL = 1e-4, BF16_TOL = 2e-2;

    /** The activations' form: off (the v2 kernels), split (hi + lo bf16) or bf16. */
    enum Form {
        OFF, SPLIT, BF16;

        /** The kernel name suffix (split, bf16). */
        String suffix() { return name().toLowerCase(Locale.ROOT); }

        double tol() { return this == SPLIT ? SPLIT_TOL : BF16_TOL; }

        static Form of(String v) {
            return switch (v == null ? "off" : v.trim().toLowerCase(Locale.ROOT)) {
                case "off", "", "false", "v2" -> OFF;
                case "split" -> SPLIT;
                case "bf16" -> BF16;
                default -> throw new IllegalArgumentException("-Dlightmesh.decode.tc takes off, split or bf16, got '" + v + "'");
            };
        }
    }

    private DecodeTc() {}

    /**
     * The setting, -Dlightmesh.decode.tc (default split). On the H200 decode batch 8 went 2,663 -> 4,290 tokens/s with
     * split (4,472 with bf16) beside the device argmax (2026-12-04, session 17), and split holds the fixtures to ~1e-5.
     * The failure that kept it off (ResidentDecodeTest.twoModelsOnOneDeviceDecodeAtOnce, 2e-3 off on the H200) was the
     * test's data, not the kernels: a router near-tie (4.2e-6 of the logits' range) that split's ~1e-6 reordering
     * flipped; the test now uses tokens without one. Only NVIDIA builds the kernels; elsewhere (PoCL in CI) the v2
     * kernels run whatever the setting.
     */
    static Form wanted() { return Form.of(System.getProperty("lightmesh.decode.tc", "split")); }

    /** resident.cl (the helpers) and decode_tc.cl, one program. */
    static String source() { return ResidentOps.resource("resident.cl") + "\n" + ResidentOps.resource("decode_tc.cl"); }

    /** What the start-up line says of the form now. */
    static String describe(Form f) {
        return switch (f) {
            case OFF -> "CUDA-core matrix-vector kernels";
            case SPLIT -> "tensor cores, split (activations as bf16 hi + lo, ~fp32)";
            case BF16 -> "tensor cores, bf16 activations";
        };
    }

    /** Relative L2 distance of got from ref (infinite where got has a non-finite element). */
    static double relError(float[] ref, float[] got) {
        double diff = 0, norm = 0;
        for (int i = 0; i < ref.length; i++) {
            if (!Float.isFinite(got[i])) return Double.POSITIVE_INFINITY;
            double d = got[i] - ref[i];
            diff += d * d;
            norm += (double) ref[i] * ref[i];
        }
        return Math.sqrt(diff / Math.max(norm, 1e-30));
    }

    /** One comparison of the check: the kernel, the form and the error against the v2 twin. */
    record Result(String kernel, Form form, double error) {
        boolean ok() { return error <= form.tol(); }

        @Override
        public String toString() { return String.format(Locale.ROOT, "%s_%s %.2e", kernel, form.suffix(), error); }
    }

    /**
     * Every kernel of both forms against its v2 twin on random data with ragged shapes (rows not a multiple of 16,
     * k over two passes of the slab loop, 1..11 rows of x, experts not chosen): the program must be built.
     */
    static List<Result> check(ResidentOps ops) {
        List<Result> results = new ArrayList<>();
        for (Form f : new Form[]{Form.SPLIT, Form.BF16}) {
            Random rnd = new Random(16);
            for (int n : new int[]{3, 11}) results.add(checkMatvec(ops, f, rnd, n, 40, 1064));
            results.add(checkProj(ops, f, rnd, false, 5, 1064));
            results.add(checkProj(ops, f, rnd, true, 3, 264));
            results.add(checkExperts(ops, f, rnd, 6, 2, 4, 1064, 40));
        }
        return results;
    }

    private static float[] random(Random rnd, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = rnd.nextFloat() * 2 - 1;
        return a;
    }

    private static float[] nans(int n) {
        float[] a = new float[n];
        Arrays.fill(a, Float.NaN);
        return a;
    }

    /** A device copy of a random bf16 weight of n elements. */
    private static ResidentOps.ClBuffer bf16(ResidentOps ops, Random rnd, int n, List<ResidentOps.ClBuffer> open) {
        short[] bits = new short[n];
        for (int i = 0; i < n; i++) {
            bits[i] = (short) (Float.floatToRawIntBits(TensorCores.roundBf16(rnd.nextFloat() * 2 - 1)) >>> 16);
        }
        ResidentOps.ClBuffer b = ops.bf16Buffer(bits);
        open.add(b);
        return b;
    }

    private static ResidentOps.ClBuffer up(ResidentOps ops, float[] v, List<ResidentOps.ClBuffer> open) {
        ResidentOps.ClBuffer b = ops.floats(Math.max(1, v.length));
        ops.write(b, 0, v, 0, v.length);
        open.add(b);
        return b;
    }

    private static float[] fetch(ResidentOps ops, ResidentOps.ClBuffer b, int n) {
        float[] out = new float[n];
        ops.read(b, 0, out, 0, n);
        return out;
    }

    private static void close(List<ResidentOps.ClBuffer> open) {
        for (ResidentOps.ClBuffer b : open) b.close();
        open.clear();
    }

    /** dtc_matvec against matvec2_bf16v (in passes of 8 rows of x) on an out x in weight. */
    private static Result checkMatvec(ResidentOps ops, Form f, Random rnd, int n, int out, int in) {
        List<ResidentOps.ClBuffer> open = new ArrayList<>();
        try {
            ResidentOps.ClBuffer w = bf16(ops, rnd, out * in, open), x = up(ops, random(rnd, n * in), open);
            ResidentOps.ClBuffer want = up(ops, nans(n * out), open), got = up(ops, nans(n * out), open);
            for (int r0 = 0; r0 < n; r0 += ResidentOps.MAXN) {
                ops.launchResident("matvec2_bf16v", (long) ResidentOps.ceilDiv(out, ResidentOps.WG) * ResidentOps.NT, w,
                        0L, x, (long) r0 * in, want, (long) r0 * out, Math.min(ResidentOps.MAXN, n - r0), in, out);
            }
            ops.launchDtc((n > 8 ? "dtc_matvec16_" : "dtc_matvec_") + f.suffix(), (long) ResidentOps.ceilDiv(out, ROWS) * ResidentOps.NT, w, 0L, x,
                    0L, got, 0L, n, in, out);
            return new Result("dtc_matvec(n=" + n + ")", f, relError(fetch(ops, want, n * out), fetch(ops, got, n * out)));
        } finally {
            close(open);
        }
    }

    /** dtc_proj (SiLU on the first output) or dtc_projr (RoPE, the KV append) against dec_proj2 / dec_projr2. */
    private static Result checkProj(ResidentOps ops, Form f, Random rnd, boolean rope, int n, int in) {
        int heads = 2, kvHeads = 1, dim = 16, hr = 4, kvd = kvHeads * dim;
        int outA = rope ? heads * dim : 24, outB = rope ? kvd : 16, outC = rope ? kvd : 8;
        List<ResidentOps.ClBuffer> open = new ArrayList<>();
        try {
            ResidentOps.ClBuffer wa = bf16(ops, rnd, outA * in, open), wb = bf16(ops, rnd, outB * in, open);
            ResidentOps.ClBuffer wc = bf16(ops, rnd, outC * in, open), x = up(ops, random(rnd, n * in), open);
            float[] inv = new float[hr];
            for (int i = 0; i < hr; i++) inv[i] = (float) Math.pow(10000, -2.0 * i / (2 * hr));
            ResidentOps.ClBuffer invFreq = up(ops, inv, open);
            int[] info = new int[3 * ResidentOps.MAXN];
            for (int t = 0; t < n; t++) info[ResidentOps.MAXN + t] = t + 1; // positions 1..n
            ResidentOps.ClBuffer infoBuf = ops.ints(info.length), counter = ops.ints(1);
            open.add(infoBuf);
            open.add(counter);
            ops.write(infoBuf, info, info.length);
            ops.write(counter, new int[1], 1);
            float[][] got = new float[2][];
            for (int pass = 0; pass < 2; pass++) {
                ResidentOps.ClBuffer ya = up(ops, nans(n * outA), open), yb = up(ops, nans(n * outB), open);
                ResidentOps.ClBuffer yc = up(ops, nans(n * outC), open);
                float[] cache0 = random(new Random(5), (n + 1) * kvd);
                ResidentOps.ClBuffer[] kc = new ResidentOps.ClBuffer[ResidentOps.MAXN], vc = new ResidentOps.ClBuffer[ResidentOps.MAXN];
                for (int t = 0; t < ResidentOps.MAXN; t++) {
                    kc[t] = up(ops, cache0, open);
                    vc[t] = up(ops, cache0, open);
                }
                List<Object> args = new ArrayList<>(List.of(wa, wb, wc, x, ya, yb, yc, n, in, outA, outB, outC,
                        rope ? 0 : 1, infoBuf, invFreq, heads, kvHeads, dim, hr, counter));
                args.addAll(Arrays.asList(kc));
                args.addAll(Arrays.asList(vc));
                int total = outA + outB + outC;
                if (pass == 0) {
                    ops.launchResident(rope ? "dec_projr2_bf16v" : "dec_proj2_bf16v",
                            (long) ResidentOps.ceilDiv(total, ResidentOps.WG) * ResidentOps.NT, args.toArray());
                } else {
                    ops.launchDtc((rope ? "dtc_projr_" : "dtc_proj_") + f.suffix(),
                            (long) ResidentOps.ceilDiv(total, ROWS) * ResidentOps.NT, args.toArray());
                }
                float[] all = new float[n * total + 2 * n * (n + 1) * kvd];
                int at = 0;
                for (float[] part : new float[][]{fetch(ops, ya, n * outA), fetch(ops, yb, n * outB), fetch(ops, yc, n * outC)}) {
                    System.arraycopy(part, 0, all, at, part.length);
                    at += part.length;
                }
                for (int t = 0; t < n; t++) {
                    System.arraycopy(fetch(ops, kc[t], (n + 1) * kvd), 0, all, at, (n + 1) * kvd);
                    at += (n + 1) * kvd;
                    System.arraycopy(fetch(ops, vc[t], (n + 1) * kvd), 0, all, at, (n + 1) * kvd);
                    at += (n + 1) * kvd;
                }
                got[pass] = all;
            }
            return new Result(rope ? "dtc_projr" : "dtc_proj", f, relError(got[0], got[1]));
        } finally {
            close(open);
        }
    }

    /**
     * dtc_gate_up and dtc_down (the combined error of act and the pairs' outputs) against moe_gate_up2 and moe_down2:
     * E experts, top k of n rows, one expert left unchosen.
     */
    private static Result checkExperts(ResidentOps ops, Form f, Random rnd, int n, int k, int E, int hidden, int inter) {
        List<ResidentOps.ClBuffer> open = new ArrayList<>();
        try {
            ResidentOps.ClBuffer w1 = bf16(ops, rnd, E * inter * hidden, open), w3 = bf16(ops, rnd, E * inter * hidden, open);
            ResidentOps.ClBuffer w2 = bf16(ops, rnd, E * hidden * inter, open), x = up(ops, random(rnd, n * hidden), open);
            int[] ids = new int[n * k];
            for (int t = 0; t < n; t++) {
                int a = rnd.nextInt(E - 1), b = (a + 1 + rnd.nextInt(E - 2)) % (E - 1); // expert E - 1 never chosen
                ids[t * k] = a;
                ids[t * k + 1] = b;
            }
            ResidentOps.ClBuffer idb = ops.ints(ids.length);
            open.add(idb);
            ops.write(idb, ids, ids.length);
            float[][] got = new float[2][];
            for (int pass = 0; pass < 2; pass++) {
                ResidentOps.ClBuffer act = up(ops, nans(n * k * inter), open), out = up(ops, nans(n * k * hidden), open);
                if (pass == 0) {
                    ops.launchResident("moe_gate_up2_bf16v", (long) E * ResidentOps.ceilDiv(inter, ResidentOps.WG)
                            * ResidentOps.NT, w1, w3, x, idb, act, 0, n, k, inter, hidden);
                    ops.launchResident("moe_down2_bf16v", (long) E * ResidentOps.ceilDiv(hidden, ResidentOps.WG)
                            * ResidentOps.NT, w2, act, idb, out, 0, n, k, inter, hidden);
                } else {
                    ops.launchDtc("dtc_gate_up_" + f.suffix(), (long) E * ResidentOps.ceilDiv(inter, ROWS)
                            * ResidentOps.NT, w1, w3, x, idb, act, 0, n, k, inter, hidden);
                    ops.launchDtc("dtc_down_" + f.suffix(), (long) E * ResidentOps.ceilDiv(hidden, ROWS)
                            * ResidentOps.NT, w2, act, idb, out, 0, n, k, inter, hidden);
                }
                float[] a = fetch(ops, act, n * k * inter), o = fetch(ops, out, n * k * hidden);
                float[] all = Arrays.copyOf(a, a.length + o.length);
                System.arraycopy(o, 0, all, a.length, o.length);
                got[pass] = all;
            }
            return new Result("dtc_gate_up+down", f, relError(got[0], got[1]));
        } finally {
            close(open);
        }
    }
}
