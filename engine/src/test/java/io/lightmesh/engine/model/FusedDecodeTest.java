package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.FusedDecode;
import io.lightmesh.engine.backend.opencl.OpenClTestSupport;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.assertClose;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.poisoned;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.random;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.weight;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * Every launch of the fused decode step ({@link FusedDecode}) against the per-operation {@link DeviceOps} calls it
 * stands for (each of which {@link ResidentOpsTest} checks against the host code), on the same device: random inputs,
 * outputs poisoned with NaN, batches of 1, 3 and 8 rows, ragged shapes. Tolerance: {@link OpenClTestSupport}'s
 * (relative L2 1e-4). Runs on PoCL without a GPU. Every test runs with each set of decode kernels: v1, v2, v2 with two weight rows a lane group,
 * and v3 (decode_v3.cl, bf16 products of in % 8 == 0; v2 for the rest) with its rows a lane group auto, 1, 2 and 4
 * and the norms and router in the products' tails, and v3s (v3 with the tails apart: their own launches).
 */
@org.junit.jupiter.params.ParameterizedClass
@org.junit.jupiter.params.provider.ValueSource(strings = {"v1", "v2", "v2x2", "v3", "v3r1", "v3r2", "v3r4", "v3s"})
class FusedDecodeTest {
    private static DeviceOps d() { return OpenClTestSupport.ops().resident(); }

    /** The decode kernels under test (-Dlightmesh.decode.kernels): every launch of both sets is checked. */
    @org.junit.jupiter.params.Parameter
    String kernels;

    @org.junit.jupiter.api.BeforeEach
    void chooseKernels() {
        var r = (io.lightmesh.engine.backend.opencl.ResidentOps) d();
        boolean x2 = kernels.endsWith("x2"); // v2x2: the v2 products with two weight rows a lane group
        org.junit.jupiter.api.Assertions.assertEquals(kernels.substring(0, 2), r.decodeKernels(kernels.substring(0, 2)),
                "decode_v3.cl: " + r.v3WhyNot());
        org.junit.jupiter.api.Assertions.assertEquals(x2 ? 2 : 1, r.decodeWarpRows(x2 ? 2 : 1));
        // v3r<R>: the v3 products with R weight rows a lane group (v3: auto)
        int rows = kernels.startsWith("v3r") ? kernels.charAt(3) - '0' : 0;
        org.junit.jupiter.api.Assertions.assertEquals(rows, r.decodeV3Rows(rows));
        org.junit.jupiter.api.Assertions.assertEquals(!kernels.equals("v3s"), r.decodeV3Tails(!kernels.equals("v3s")));
    }

    @org.junit.jupiter.api.AfterEach
    void defaultKernels() {
        var r = (io.lightmesh.engine.backend.opencl.ResidentOps) d();
        r.decodeKernels(null);
        r.decodeWarpRows(0);
        r.decodeV3Rows(-1);
        r.decodeV3Tails(null);
    }

    private static FusedDecode f() {
        FusedDecode f = d().fused();
        assertNotNull(f, "the OpenCL device offers the fused decode step");
        return f;
    }

    enum Dt { F32, BF16 }

    private static DType dtype(Dt t) { return t == Dt.F32 ? DType.F32 : DType.BF16; }

    private final List<Buffer> open = new ArrayList<>();

    private Buffer up(float[] v) {
        Buffer b = d().upload(v);
        open.add(b);
        return b;
    }

    private Buffer poison(int n) { return up(poisoned(n)); }

    private static float[] fetch(Buffer b, int n) {
        float[] out = new float[n];
        d().read(b, 0, out, 0, n);
        return out;
    }

    /** The fused launch's first n floats of got against the per-operation calls' want, within the tolerance. */
    private static void assertBuffersClose(String what, Buffer want, Buffer got, int n) {
        assertClose(what, fetch(want, n), fetch(got, n), n);
    }

    @org.junit.jupiter.api.AfterEach
    void close() {
        for (Buffer b : open) b.close();
        open.clear();
    }

    @Test
    void lightningStepOfEveryRowInOneLaunch() {
        DeviceOps d = d();
        FusedDecode f = f();
        Random rnd = new Random(31);
        for (int[] sh : new int[][]{{1, 2, 32}, {3, 3, 100}, {8, 2, 128}}) {
            int n = sh[0], H = sh[1], D = sh[2], HD = H * D, layers = 3, layer = 1;
            long stride = (H * D * D + d.viewAlignment() - 1) / d.viewAlignment() * d.viewAlignment();
            int slots = n + 2;
            int[] slot = new int[n];
            for (int t = 0; t < n; t++) slot[t] = (t * 3 + 1) % slots; // rows use scattered slots
            float[] decay = new float[H];
            for (int h = 0; h < H; h++) decay[h] = 0.01f + 0.3f * rnd.nextFloat();
            float[] poolInit = random(rnd, (int) (slots * layers * stride), 0.5f);
            Buffer pool = up(poolInit), db = up(decay), normW = up(random(rnd, HD, 1f));
            Buffer[] own = new Buffer[n];
            for (int t = 0; t < n; t++) {
                own[t] = up(Arrays.copyOfRange(poolInit, (int) ((slot[t] * layers + layer) * stride),
                        (int) ((slot[t] * layers + layer) * stride + H * D * D)));
            }
            for (int step = 0; step < 2; step++) {
                Buffer qkv = up(random(rnd, n * 3 * HD, 1f)), gate = up(random(rnd, n * HD, 1f));
                Buffer want = poison(n * HD), got = poison(n * HD);
                for (int t = 0; t < n; t++) d.lightningStep(qkv, t, H, D, db, own[t], want);
                d.normGate(want, n, HD, normW, 1e-6f, gate);
                f.rows(new int[n], new int[n], slot, n);
                f.lightning(qkv, n, H, D, db, pool, layer, layers, stride, got, gate, normW, 1e-6f);
                String what = "lightning " + Arrays.toString(sh) + " step " + step;
                assertBuffersClose(what + " out", want, got, n * HD);
                float[] all = fetch(pool, (int) (slots * layers * stride));
                for (int t = 0; t < n; t++) {
                    int at = (int) ((slot[t] * layers + layer) * stride);
                    assertClose(what + " state of row " + t, fetch(own[t], H * D * D),
                            Arrays.copyOfRange(all, at, at + H * D * D), H * D * D);
                }
            }
        }
    }

    private Buffer ints(int[] v) {
        Buffer b = d().ints(Math.max(1, v.length));
        d().write(b, v, v.length);
        open.add(b);
        return b;
    }

    private static int[] fetchInts(Buffer b, int n) {
        int[] out = new int[n];
        d().read(b, out, n);
        return out;
    }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void embeddingAndFirstNorm(Dt dt) {
        DeviceOps d = d();
        FusedDecode f = f();
        Random rnd = new Random(32);
        int V = 50, h = 72;
        Tensor table = weight(rnd, dtype(dt), V, h);
        for (int n : new int[]{1, 3, 8}) {
            int[] ids = rnd.ints(n, 0, V).toArray();
            Buffer w = up(random(rnd, h, 1f)), idb = ints(ids), want = poison(n * h), got = poison(n * h);
            d.embed(table, idb, n, want);
            d.rmsNorm(want, n, h, w, 1e-5f, want);
            f.rows(ids, new int[n], new int[n], n);
            f.embedNorm(table, n, w, 1e-5f, got);
            assertBuffersClose("embed " + dt + " n=" + n, want, got, n * h);
        }
    }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void lightningProjections(Dt dt) {
        DeviceOps d = d();
        FusedDecode f = f();
        Random rnd = new Random(33);
        for (int[] sh : new int[][]{{1, 64, 96}, {3, 36, 60}, {8, 128, 256}}) { // {n, in, HD}; in = 36: scalar rows
            int n = sh[0], in = sh[1], HD = sh[2];
            Tensor wQkv = weight(rnd, dtype(dt), 3 * HD, in), wGate = weight(rnd, dtype(dt), HD, in);
            Buffer x = up(random(rnd, n * in, 1f));
            Buffer qkvWant = poison(n * 3 * HD), gateWant = poison(n * HD), qkv = poison(n * 3 * HD), gate = poison(n * HD);
            d.matmul(x, n, wQkv, qkvWant);
            d.silu(qkvWant, (long) n * 3 * HD);
            d.matmul(x, n, wGate, gateWant);
            f.lightningProjections(x, n, wQkv, wGate, qkv, gate);
            String what = "projections " + dt + " " + Arrays.toString(sh);
            assertBuffersClose(what + " qkv", qkvWant, qkv, n * 3 * HD);
            assertBuffersClose(what + " gate", gateWant, gate, n * HD);
        }
    }

    /**
     * q, k, v with RoPE and the KV append, then attention of every row over its own cache: against matmul, rope,
     * copy and decodeAttention row by row. Rows at different lengths; a long one crosses several splits of 256 keys.
     */
    @ParameterizedTest
    @EnumSource(Dt.class)
    void attentionProjectionsAndAttention(Dt dt) {
        DeviceOps d = d();
        FusedDecode f = f();
        Random rnd = new Random(34);
        // {n, in, H, KV, D, rotary half, longest}
        for (int[] sh : new int[][]{{1, 64, 2, 1, 32, 8, 900}, {3, 48, 4, 2, 16, 4, 300}, {8, 128, 8, 2, 64, 16, 700}}) {
            int n = sh[0], in = sh[1], H = sh[2], KV = sh[3], D = sh[4], hr = sh[5], longest = sh[6];
            int kvd = KV * D, HD = H * D;
            Tensor wq = weight(rnd, dtype(dt), HD, in), wk = weight(rnd, dtype(dt), kvd, in), wv = weight(rnd, dtype(dt), kvd, in);
            float[] inv = new float[hr];
            for (int i = 0; i < hr; i++) inv[i] = (float) Math.pow(10000, -2.0 * i / (2 * hr));
            Buffer invFreq = up(inv), x = up(random(rnd, n * in, 1f));
            int[] pos = new int[n];
            for (int t = 0; t < n; t++) pos[t] = t == 0 ? longest : rnd.nextInt(longest);
            Buffer[] kWant = new Buffer[n], vWant = new Buffer[n], kGot = new Buffer[n], vGot = new Buffer[n];
            for (int t = 0; t < n; t++) {
                float[] k0 = random(rnd, (pos[t] + 1) * kvd, 1f), v0 = random(rnd, (pos[t] + 1) * kvd, 1f);
                kWant[t] = up(k0);
                vWant[t] = up(v0);
                kGot[t] = up(k0);
                vGot[t] = up(v0);
            }
            Buffer q = poison(n * HD), k = poison(n * kvd), v = poison(n * kvd), o = poison(n * HD);
            Buffer qf = poison(n * HD), kf = poison(n * kvd), vf = poison(n * kvd), of = poison(n * HD), pb = ints(pos);
            d.matmul(x, n, wq, q);
            d.matmul(x, n, wk, k);
            d.matmul(x, n, wv, v);
            d.rope(q, n, H, D, invFreq, hr, pb);
            d.rope(k, n, KV, D, invFreq, hr, pb);
            for (int t = 0; t < n; t++) {
                d.copy(k, (long) t * kvd, kWant[t], (long) pos[t] * kvd, kvd);
                d.copy(v, (long) t * kvd, vWant[t], (long) pos[t] * kvd, kvd);
                d.decodeAttention(q, t, H, KV, D, kWant[t], vWant[t], pos[t] + 1, o);
            }
            f.rows(new int[n], pos, new int[n], n);
            f.attentionProjections(x, n, wq, wk, wv, qf, kf, vf, H, KV, D, invFreq, hr, kGot, vGot);
            f.attention(qf, n, H, KV, D, kGot, vGot, longest + 1, of);
            String what = "attention " + dt + " " + Arrays.toString(sh);
            assertBuffersClose(what + " q", q, qf, n * HD);
            for (int t = 0; t < n; t++) {
                int len = (pos[t] + 1) * kvd;
                assertBuffersClose(what + " k cache " + t, kWant[t], kGot[t], len);
                assertBuffersClose(what + " v cache " + t, vWant[t], vGot[t], len);
            }
            assertBuffersClose(what + " out", o, of, n * HD);
        }
    }

    /** The two forms of the output and expert launches: with tails, and split (one group per row). */
    enum Form { TAILS, SPLIT }

    private static FusedDecode f(Form form) {
        FusedDecode f = f();
        ((io.lightmesh.engine.backend.opencl.ResidentOps) d()).fusedTails(form == Form.TAILS);
        return f;
    }

    @org.junit.jupiter.api.AfterEach
    void restoreForm() { ((io.lightmesh.engine.backend.opencl.ResidentOps) d()).fusedTails(false); } // the default

    /** The output projection, the residual and post-norm, and the router's top k (with its route log). */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.CsvSource({"F32,TAILS", "BF16,TAILS", "F32,SPLIT", "BF16,SPLIT"})
    void outputResidualNormAndRouter(Dt dt, Form form) {
        DeviceOps d = d();
        FusedDecode f = f(form);
        Random rnd = new Random(35);
        // {n, in (H*D), h, E, K}
        for (int[] sh : new int[][]{{1, 64, 48, 4, 2}, {5, 96, 72, 8, 2}, {8, 128, 64, 64, 6}}) {
            int n = sh[0], in = sh[1], h = sh[2], E = sh[3], K = sh[4];
            Tensor w = weight(rnd, dtype(dt), h, in), gate = weight(rnd, dtype(dt), E, h);
            float[] x0 = random(rnd, n * h, 1f);
            Buffer o = up(random(rnd, n * in, 1f)), normW = up(random(rnd, h, 1f));
            Buffer xWant = up(x0), xGot = up(x0), a = poison(n * h), aGot = poison(n * h), logits = poison(n * E);
            Buffer ids = ints(new int[n * K]), wts = poison(n * K), idsGot = ints(new int[n * K]), wtsGot = poison(n * K);
            Buffer log = ints(new int[3 * n * K]);
            d.matmul(o, n, w, a);
            d.residualNorm(xWant, 0.7f, a, null, 1, 1.3f, n, h, normW, 1e-5f, xWant);
            d.matmul(xWant, n, gate, logits);
            d.route(logits, n, E, K, ids, wts);
            f.outputAndRoute(o, n, w, aGot, xGot, 0.7f, 1.3f, normW, 1e-5f, gate, K, idsGot, wtsGot, log, (long) n * K);
            String what = "output " + dt + " " + form + " " + Arrays.toString(sh);
            assertBuffersClose(what + " x", xWant, xGot, n * h);
            int[] want = fetchInts(ids, n * K);
            assertArrayEquals(want, fetchInts(idsGot, n * K), what + " ids");
            assertArrayEquals(want, Arrays.copyOfRange(fetchInts(log, 3 * n * K), n * K, 2 * n * K), what + " route log");
            assertBuffersClose(what + " weights", wts, wtsGot, n * K);
        }
    }

    /** The chosen experts and the MoE residual with the next norm. */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.CsvSource({"F32,TAILS", "BF16,TAILS", "F32,SPLIT", "BF16,SPLIT"})
    void expertsResidualAndNextNorm(Dt dt, Form form) {
        DeviceOps d = d();
        FusedDecode f = f(form);
        Random rnd = new Random(36);
        // {E, K, hidden, inter, n}: ragged rows (scalar path) and a full batch of 8
        for (int[] sh : new int[][]{{4, 2, 64, 48, 1}, {5, 3, 36, 20, 4}, {8, 2, 128, 96, 8}}) {
            int E = sh[0], K = sh[1], h = sh[2], I = sh[3], n = sh[4];
            Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E];
            for (int e = 0; e < E; e++) {
                w1[e] = weight(rnd, dtype(dt), I, h);
                w3[e] = weight(rnd, dtype(dt), I, h);
                w2[e] = weight(rnd, dtype(dt), h, I);
            }
            int[] idv = new int[n * K];
            for (int t = 0; t < n; t++) System.arraycopy(rnd.ints(0, E).distinct().limit(K).toArray(), 0, idv, t * K, K);
            float[] x0 = random(rnd, n * h, 1f);
            Buffer ids = ints(idv), wts = up(random(rnd, n * K, 1f)), normW = up(random(rnd, h, 1f));
            Buffer xWant = up(x0), xGot = up(x0), act = poison(n * K * I), pairs = poison(n * K * h);
            Buffer act2 = poison(n * K * I), pairs2 = poison(n * K * h);
            DeviceOps.ExpertSet set = d.experts(w1, w3, w2);
            try {
                d.runExperts(set, xWant, n, K, ids, act, pairs);
                d.residualNorm(xWant, 0.9f, pairs, wts, K, 1.1f, n, h, normW, 1e-5f, xWant);
                f.experts(set, xGot, n, K, ids, wts, act2, pairs2, 0.9f, 1.1f, normW, 1e-5f);
                assertBuffersClose("experts " + dt + " " + form + " " + Arrays.toString(sh), xWant, xGot, n * h);
            } finally {
                d.release(set);
            }
        }
    }
}
