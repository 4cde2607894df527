package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.opencl.OpenClTestSupport;
import io.lightmesh.engine.backend.opencl.ResidentOps;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.Arrays;
import java.util.Random;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.assertClose;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.poisoned;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.random;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.weight;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Every kernel of the device-resident path ({@link ResidentOps}) against the host code the engine runs: the plain
 * Java {@link ReferenceOps} for products, lightning steps and attention, and the model's own {@link Functions},
 * {@link Rope} and {@link MoeLayer#route} for the elementwise work. Fresh random inputs per case, every output
 * poisoned with NaN on the device before the run, several shapes each (ragged ones: lengths that are not multiples
 * of the vector width, tile or work-group, and batches past one launch's 8 rows). Tolerance: that of
 * {@link OpenClTestSupport} (relative L2 1e-4, element 1e-3 of max |ref|; NaN fails).
 *
 * <p>Runs on PoCL on a machine without a GPU; skipped without any OpenCL device unless LIGHTMESH_REQUIRE_OPENCL=1.
 */
class ResidentOpsTest {

    private static DeviceOps d() { return OpenClTestSupport.ops().resident(); }

    private static final ReferenceOps REF = new ReferenceOps();

    /** A device buffer of n NaNs: any element a kernel fails to write stays NaN and fails the comparison. */
    private static Buffer poison(DeviceOps d, int n) { return d.upload(poisoned(n)); }

    private static float[] fetch(DeviceOps d, Buffer b, int n) {
        float[] out = new float[n];
        d.read(b, 0, out, 0, n);
        return out;
    }

    enum Dt { F32, BF16 }


    private static DType dtype(Dt t) { return t == Dt.F32 ? DType.F32 : DType.BF16; }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void matmulMatchesReference(Dt dt) {
        DeviceOps d = d();
        Random rnd = new Random(11 + dt.ordinal());
        // {out, in, n}: vector rows (in % 8 == 0), ragged rows (scalar path), one row, 8 rows, past 8 rows (chunks),
        // and from 33 rows the tiled GEMM: ragged in k (not a multiple of 4 or 16), in rows and columns of the tile
        int[][] shapes = {{37, 64, 1}, {130, 128, 3}, {64, 33, 2}, {257, 1000, 8}, {100, 72, 11}, {5, 28, 1}, {300, 2048, 4},
                {65, 33, 40}, {129, 256, 33}, {260, 70, 131}, {7, 9, 200}};
        for (int[] sh : shapes) {
            int out = sh[0], in = sh[1], n = sh[2];
            Tensor w = weight(rnd, dtype(dt), out, in);
            float[] x = random(rnd, n * in, 1f);
            float[] ref = new float[n * out];
            REF.matmul(x, n, w, ref);
            try (Buffer xb = d.upload(x); Buffer yb = poison(d, n * out)) {
                d.matmul(xb, n, w, yb);
                assertClose("matmul " + dt + " " + Arrays.toString(sh), ref, fetch(d, yb, n * out), n * out);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void embedGathersRows(Dt dt) {
        DeviceOps d = d();
        Random rnd = new Random(5);
        Tensor table = weight(rnd, dtype(dt), 301, 36);
        int[] ids = {0, 300, 17, 17, 150};
        float[] ref = new float[ids.length * 36];
        for (int t = 0; t < ids.length; t++) table.copyTo((long) ids[t] * 36, ref, t * 36, 36);
        try (Buffer ib = d.ints(ids.length); Buffer out = poison(d, ref.length)) {
            d.write(ib, ids, ids.length);
            d.embed(table, ib, ids.length, out);
            assertArrayEquals(ref, fetch(d, out, ref.length), "embedding rows are copied exactly");
        }
    }

    @Test
    void rmsNormMatchesFunctions() {
        DeviceOps d = d();
        Random rnd = new Random(7);
        for (int[] sh : new int[][]{{1, 64}, {3, 300}, {2, 1000}, {9, 2048}}) {
            int rows = sh[0], dim = sh[1];
            float[] x = random(rnd, rows * dim, 3f), w = random(rnd, dim, 1f), ref = new float[rows * dim];
            Functions.rmsNorm(x, rows, dim, w, 1e-5, ref);
            try (Buffer xb = d.upload(x); Buffer wb = d.upload(w); Buffer out = poison(d, rows * dim)) {
                d.rmsNorm(xb, rows, dim, wb, 1e-5f, out);
                assertClose("rmsNorm " + Arrays.toString(sh), ref, fetch(d, out, rows * dim), rows * dim);
                d.rmsNorm(xb, rows, dim, wb, 1e-5f, xb); // in place, as the decode step uses it
                assertClose("rmsNorm in place " + Arrays.toString(sh), ref, fetch(d, xb, rows * dim), rows * dim);
            }
        }
    }

    @Test
    void residualNormMatchesFunctions() {
        DeviceOps d = d();
        Random rnd = new Random(8);
        for (int[] sh : new int[][]{{1, 64, 1}, {3, 300, 2}, {5, 1000, 3}, {2, 33, 2}}) {
            int rows = sh[0], dim = sh[1], k = sh[2], len = rows * dim;
            float alpha = 3.5565588f, beta = 0.75f;
            float[] x = random(rnd, len, 2f), w = random(rnd, dim, 1f);
            float[] upd = random(rnd, rows * k * dim, 2f), wts = random(rnd, rows * k, 1f);
            // host: the update combined as LocalExperts does (weight times each pair's row), residual, then the norm
            float[] u = new float[len];
            for (int t = 0; t < rows; t++) {
                for (int j = 0; j < k; j++) {
                    for (int i = 0; i < dim; i++) u[t * dim + i] += wts[t * k + j] * upd[(t * k + j) * dim + i];
                }
            }
            float[] h = new float[len], ref = new float[len];
            Functions.scaledResidual(x, alpha, u, beta, len, h);
            Functions.rmsNorm(h, rows, dim, w, 1e-5, ref);
            try (Buffer xb = d.upload(x); Buffer ub = d.upload(upd); Buffer wtb = d.upload(wts); Buffer wb = d.upload(w)) {
                d.residualNorm(xb, alpha, ub, wtb, k, beta, rows, dim, wb, 1e-5f, xb); // in place
                assertClose("residualNorm weighted " + Arrays.toString(sh), ref, fetch(d, xb, len), len);
            }
            // unweighted (attention block): update [rows, dim] as is
            float[] a = random(rnd, len, 2f);
            Functions.scaledResidual(x, alpha, a, beta, len, h);
            Functions.rmsNorm(h, rows, dim, w, 1e-5, ref);
            try (Buffer xb = d.upload(x); Buffer ab = d.upload(a); Buffer wb = d.upload(w); Buffer out = poison(d, len)) {
                d.residualNorm(xb, alpha, ab, null, 1, beta, rows, dim, wb, 1e-5f, out);
                assertClose("residualNorm " + Arrays.toString(sh), ref, fetch(d, out, len), len);
            }
        }
    }

    @Test
    void siluAndNormGateMatchFunctions() {
        DeviceOps d = d();
        Random rnd = new Random(9);
        for (int n : new int[]{1, 255, 1003, 6144}) {
            float[] x = random(rnd, n, 8f), ref = x.clone();
            Functions.siluInPlace(ref, n);
            try (Buffer xb = d.upload(x)) {
                d.silu(xb, n);
                assertClose("silu " + n, ref, fetch(d, xb, n), n);
            }
        }
        for (int[] sh : new int[][]{{1, 128}, {3, 400}, {2, 2048}, {11, 96}}) {
            int rows = sh[0], dim = sh[1], len = rows * dim;
            float[] o = random(rnd, len, 2f), gate = random(rnd, len, 4f), w = random(rnd, dim, 1f), ref = new float[len];
            Functions.rmsNorm(o, rows, dim, w, 1e-6, ref);
            Functions.mulSigmoid(ref, gate, len);
            try (Buffer ob = d.upload(o); Buffer gb = d.upload(gate); Buffer wb = d.upload(w)) {
                d.normGate(ob, rows, dim, wb, 1e-6f, gb);
                assertClose("normGate " + Arrays.toString(sh), ref, fetch(d, ob, len), len);
            }
        }
    }

    @Test
    void lightningStepsMatchReference() {
        DeviceOps d = d();
        Random rnd = new Random(10);
        // {rows, heads, D}: D below, at and past one 64-column tile, ragged D = 100
        for (int[] sh : new int[][]{{1, 2, 32}, {3, 3, 100}, {2, 4, 128}, {9, 1, 64}}) {
            int rows = sh[0], H = sh[1], D = sh[2], HD = H * D;
            float[] decay = new float[H];
            for (int h = 0; h < H; h++) decay[h] = 0.01f + 0.3f * rnd.nextFloat();
            float[][] states = new float[rows][];
            for (int r = 0; r < rows; r++) states[r] = random(rnd, H * D * D, 0.5f);
            Buffer[] sb = new Buffer[rows];
            for (int r = 0; r < rows; r++) sb[r] = d.upload(states[r]);
            try (Buffer db = d.upload(decay); Buffer ob = poison(d, rows * HD)) {
                for (int step = 0; step < 3; step++) { // the state carries from step to step on the device
                    float[] qkv = random(rnd, rows * 3 * HD, 1f);
                    float[][] qkvSplit = LightningAttention.splitQkv(qkv, rows, H, D);
                    float[] q = qkvSplit[0], k = qkvSplit[1], v = qkvSplit[2];
                    float[] ref = new float[rows * HD];
                    REF.lightningDecode(q, k, v, rows, H, D, decay, states, ref);
                    try (Buffer qb = d.upload(qkv)) {
                        d.write(ob, 0, poisoned(rows * HD), 0, rows * HD);
                        for (int r = 0; r < rows; r++) d.lightningStep(qb, r, H, D, db, sb[r], ob);
                    }
                    String what = "lightning " + Arrays.toString(sh) + " step " + step;
                    assertClose(what + " out", ref, fetch(d, ob, rows * HD), rows * HD);
                    for (int r = 0; r < rows; r++) assertClose(what + " state " + r, states[r], fetch(d, sb[r], H * D * D), H * D * D);
                }
            } finally {
                for (Buffer b : sb) b.close();
            }
        }
    }

    @Test
    void lightningScanMatchesReferencePrefill() {
        DeviceOps d = d();
        Random rnd = new Random(15);
        // {tokens, heads, D}: one token, ragged D = 100 (two column tiles, the second partial), past one tile
        for (int[] sh : new int[][]{{1, 2, 32}, {37, 3, 100}, {300, 2, 128}, {5, 1, 64}}) {
            int n = sh[0], H = sh[1], D = sh[2], HD = H * D;
            float[] decay = new float[H];
            for (int h = 0; h < H; h++) decay[h] = 0.01f + 0.3f * rnd.nextFloat();
            float[] state = random(rnd, H * D * D, 0.5f);
            try (Buffer db = d.upload(decay); Buffer sb = d.upload(state); Buffer ob = poison(d, n * HD)) {
                for (int call = 0; call < 2; call++) { // the state carries from call to call on the device
                    float[] qkv = random(rnd, n * 3 * HD, 0.5f);
                    float[][] qkvSplit = LightningAttention.splitQkv(qkv, n, H, D);
                    float[] q = qkvSplit[0], k = qkvSplit[1], v = qkvSplit[2];
                    float[] ref = new float[n * HD];
                    REF.lightningPrefill(q, k, v, n, H, D, decay, 16, state, ref); // block form, blocks of 16
                    try (Buffer qb = d.upload(qkv)) {
                        d.write(ob, 0, poisoned(n * HD), 0, n * HD);
                        d.lightningScan(qb, n, H, D, db, sb, ob);
                    }
                    String what = "lightning scan " + Arrays.toString(sh) + " call " + call;
                    assertClose(what + " out", ref, fetch(d, ob, n * HD), n * HD);
                    assertClose(what + " state", state, fetch(d, sb, H * D * D), H * D * D);
                }
            }
        }
    }

    /** The pieces of grouped experts (prefill): one expert's products out of a stacked set, row gather/scatter, SiLU(g)*u. */
    @ParameterizedTest
    @EnumSource(Dt.class)
    void groupedExpertPiecesMatchReference(Dt dt) {
        DeviceOps d = d();
        Random rnd = new Random(17 + dt.ordinal());
        int E = 3, h = 72, I = 40;
        Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E];
        for (int e = 0; e < E; e++) {
            w1[e] = weight(rnd, dtype(dt), I, h);
            w3[e] = weight(rnd, dtype(dt), I, h);
            w2[e] = weight(rnd, dtype(dt), h, I);
        }
        DeviceOps.ExpertSet set = d.experts(w1, w3, w2);
        for (int n : new int[]{3, 40}) { // matrix-vector passes and the GEMM, on experts past the first (offsets)
            for (int e = 1; e < E; e++) {
                float[] x = random(rnd, n * h, 1f), g = random(rnd, n * I, 1f);
                float[] r1 = new float[n * I], r3 = new float[n * I], r2 = new float[n * h];
                REF.matmul(x, n, w1[e], r1);
                REF.matmul(x, n, w3[e], r3);
                REF.matmul(g, n, w2[e], r2);
                try (Buffer xb = d.upload(x); Buffer gb = d.upload(g); Buffer o1 = poison(d, n * I); Buffer o3 = poison(d, n * I);
                     Buffer o2 = poison(d, n * h)) {
                    d.expertProduct(set, DeviceOps.ExpertWeight.W1, e, xb, n, o1);
                    d.expertProduct(set, DeviceOps.ExpertWeight.W3, e, xb, n, o3);
                    d.expertProduct(set, DeviceOps.ExpertWeight.W2, e, gb, n, o2);
                    String what = dt + " expert " + e + " n=" + n;
                    assertClose(what + " W1", r1, fetch(d, o1, n * I), n * I);
                    assertClose(what + " W3", r3, fetch(d, o3, n * I), n * I);
                    assertClose(what + " W2", r2, fetch(d, o2, n * h), n * h);
                    // SiLU(g) * u
                    float[] want = Arrays.copyOf(r1, n * I);
                    Functions.siluMul(want, r3, n * I);
                    d.siluMul(o1, o3, (long) n * I);
                    assertClose(what + " siluMul", want, fetch(d, o1, n * I), n * I);
                }
            }
        }
        // gather rows 4, 0, 4, 2 (offset 1 into the index), scatter them to rows 3, 1, 0, 2: exact copies
        int dim = 33;
        float[] src = random(rnd, 5 * dim, 1f);
        int[] index = {9, 4, 0, 4, 2}, to = {9, 3, 1, 0, 2};
        try (Buffer sb = d.upload(src); Buffer ib = d.ints(5); Buffer tb = d.ints(5); Buffer gb = poison(d, 4 * dim);
             Buffer out = poison(d, 4 * dim)) {
            d.write(ib, index, 5);
            d.write(tb, to, 5);
            d.gatherRows(sb, dim, ib, 1, 4, gb);
            float[] gathered = fetch(d, gb, 4 * dim);
            for (int i = 0; i < 4; i++) {
                assertArrayEquals(Arrays.copyOfRange(src, index[i + 1] * dim, (index[i + 1] + 1) * dim),
                        Arrays.copyOfRange(gathered, i * dim, (i + 1) * dim), "gathered row " + i);
            }
            d.scatterRows(gb, dim, tb, 1, 4, out);
            float[] scattered = fetch(d, out, 4 * dim);
            for (int i = 0; i < 4; i++) {
                assertArrayEquals(Arrays.copyOfRange(gathered, i * dim, (i + 1) * dim),
                        Arrays.copyOfRange(scattered, to[i + 1] * dim, (to[i + 1] + 1) * dim), "scattered row " + i);
            }
        }
    }

    @Test
    void ropeMatchesHostRope() {
        DeviceOps d = d();
        Random rnd = new Random(12);
        // {rows, heads, D, rotaryDim}
        for (int[] sh : new int[][]{{1, 4, 32, 32}, {3, 2, 64, 16}, {5, 8, 128, 64}, {2, 3, 100, 50}}) {
            int rows = sh[0], heads = sh[1], D = sh[2], rd = sh[3], len = rows * heads * D;
            Rope rope = new Rope(D, rd, 10_000_000.0);
            int[] pos = new int[rows];
            for (int t = 0; t < rows; t++) pos[t] = t == 0 ? 0 : rnd.nextInt(200_000);
            float[] x = random(rnd, len, 1f), ref = x.clone();
            for (int t = 0; t < rows; t++) rope.apply(ref, t * heads * D, heads, pos[t]);
            try (Buffer xb = d.upload(x); Buffer fb = d.upload(rope.invFreq); Buffer pb = d.ints(rows)) {
                d.write(pb, pos, rows);
                d.rope(xb, rows, heads, D, fb, rd / 2, pb);
                assertClose("rope " + Arrays.toString(sh), ref, fetch(d, xb, len), len);
            }
        }
    }

    @Test
    void decodeAttentionMatchesReference() {
        DeviceOps d = d();
        Random rnd = new Random(13);
        // {H, KV, D, len}: one key, ragged lengths past tiles and splits, G = 1 and G = 16, ragged D = 100. G <= 8
        // with D % 4 == 0 takes the bandwidth kernel (attn_split_bw), the rest (G = 16, D = 30) the general one
        int[][] shapes = {{4, 2, 32, 1}, {8, 2, 64, 37}, {16, 4, 128, 1000}, {8, 8, 100, 300}, {32, 2, 128, 513},
                {64, 8, 128, 4099}, {6, 3, 30, 77}, {8, 1, 128, 2000}, {16, 2, 36, 700}};
        for (int[] sh : shapes) {
            int H = sh[0], KV = sh[1], D = sh[2], len = sh[3], rows = 2, row = 1;
            float[] k = random(rnd, len * KV * D, 1f), v = random(rnd, len * KV * D, 1f);
            float[] q = random(rnd, rows * H * D, 1f);
            float[] qRow = Arrays.copyOfRange(q, row * H * D, (row + 1) * H * D), ref = new float[H * D];
            REF.softmaxAttention(qRow, 1, H, KV, D, k, v, len - 1, ref);
            ResidentOps r = (ResidentOps) d;
            boolean fits = H / KV <= 8 && D % 4 == 0;
            try (Buffer qb = d.upload(q); Buffer kb = d.upload(k); Buffer vb = d.upload(v)) {
                for (ResidentOps.AttentionKernel kernel : ResidentOps.AttentionKernel.values()) {
                    if (!fits && kernel != ResidentOps.AttentionKernel.AUTO && kernel != ResidentOps.AttentionKernel.GENERAL) continue;
                    r.attentionKernel(kernel);
                    try (Buffer ob = poison(d, rows * H * D)) {
                        d.decodeAttention(qb, row, H, KV, D, kb, vb, len, ob);
                        float[] got = fetch(d, ob, rows * H * D);
                        assertClose("decode attention " + kernel + " " + Arrays.toString(sh), ref,
                                Arrays.copyOfRange(got, row * H * D, rows * H * D), H * D);
                        for (int i = 0; i < H * D; i++) assertEquals(Float.NaN, got[i], "row 0 must stay untouched");
                    } finally {
                        r.attentionKernel(ResidentOps.AttentionKernel.AUTO);
                    }
                }
            }
        }
    }

    /** Causal attention of a chunk of queries (prefill) against the reference, one pass and the row-by-row fallback. */
    @Test
    void causalAttentionMatchesReference() {
        DeviceOps d = d();
        ResidentOps r = (ResidentOps) d;
        Random rnd = new Random(19);
        // {H, KV, D, cached before the chunk, chunk rows}: from an empty cache, after a prefix, G = 16 (row by row)
        for (int[] sh : new int[][]{{8, 2, 64, 0, 37}, {16, 4, 128, 300, 70}, {4, 4, 32, 1, 1}, {32, 2, 32, 20, 9}}) {
            int H = sh[0], KV = sh[1], D = sh[2], before = sh[3], n = sh[4], total = before + n;
            float[] k = random(rnd, total * KV * D, 1f), v = random(rnd, total * KV * D, 1f), q = random(rnd, n * H * D, 1f);
            float[] ref = new float[n * H * D];
            REF.softmaxAttention(q, n, H, KV, D, k, v, before, ref);
            try (Buffer qb = d.upload(q); Buffer kb = d.upload(k); Buffer vb = d.upload(v)) {
                for (ResidentOps.AttentionKernel kernel : new ResidentOps.AttentionKernel[]{
                        ResidentOps.AttentionKernel.AUTO, ResidentOps.AttentionKernel.GENERAL}) {
                    r.attentionKernel(kernel);
                    try (Buffer ob = poison(d, n * H * D)) {
                        d.causalAttention(qb, n, H, KV, D, kb, vb, before + 1, ob);
                        assertClose("causal attention " + kernel + " " + Arrays.toString(sh), ref, fetch(d, ob, n * H * D), n * H * D);
                    } finally {
                        r.attentionKernel(ResidentOps.AttentionKernel.AUTO);
                    }
                }
            }
        }
    }

    @Test
    void routerMatchesMoeLayer() {
        DeviceOps d = d();
        Random rnd = new Random(14);
        for (int[] sh : new int[][]{{1, 4, 2}, {5, 8, 2}, {9, 32, 2}, {3, 64, 8}, {2, 7, 1}}) {
            int rows = sh[0], E = sh[1], K = sh[2];
            // identity gate: MoeLayer's logits are exactly x, so both sides route the same logits
            float[] eye = new float[E * E];
            for (int e = 0; e < E; e++) eye[e * E + e] = 1f;
            MoeLayer moe = new MoeLayer(config(E, K), 0, Tensor.ofFloats("gate", eye, E, E));
            float[] logits = random(rnd, rows * E, 4f);
            int[] refIds = new int[rows * K];
            float[] refW = new float[rows * K];
            moe.route(REF, logits, rows, refIds, refW);
            try (Buffer lb = d.upload(logits); Buffer ib = d.ints(rows * K); Buffer wb = poison(d, rows * K)) {
                d.route(lb, rows, E, K, ib, wb);
                int[] ids = new int[rows * K];
                ((ResidentOps) d).read(ib, ids, rows * K);
                assertArrayEquals(refIds, ids, "router ids " + Arrays.toString(sh));
                assertClose("router weights " + Arrays.toString(sh), refW, fetch(d, wb, rows * K), rows * K);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void expertsMatchReference(Dt dt) {
        DeviceOps d = d();
        Random rnd = new Random(15 + dt.ordinal());
        // {E, K, hidden, inter, rows}: vector rows, ragged rows (scalar path), a batch past 8 rows
        for (int[] sh : new int[][]{{4, 2, 64, 48, 1}, {4, 2, 64, 48, 3}, {8, 2, 128, 96, 9}, {5, 3, 36, 20, 4}}) {
            int E = sh[0], K = sh[1], h = sh[2], I = sh[3], rows = sh[4];
            Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E];
            for (int e = 0; e < E; e++) {
                w1[e] = weight(rnd, dtype(dt), I, h);
                w3[e] = weight(rnd, dtype(dt), I, h);
                w2[e] = weight(rnd, dtype(dt), h, I);
            }
            float[] x = random(rnd, rows * h, 1f);
            int[] ids = new int[rows * K];
            for (int t = 0; t < rows; t++) { // k distinct experts per token, as top-k gives
                int[] perm = rnd.ints(0, E).distinct().limit(K).toArray();
                System.arraycopy(perm, 0, ids, t * K, K);
            }
            float[] ref = new float[rows * K * h];
            for (int p = 0; p < rows * K; p++) {
                float[] xt = Arrays.copyOfRange(x, (p / K) * h, (p / K + 1) * h);
                float[] g = new float[I], u = new float[I], y = new float[h];
                REF.matmul(xt, 1, w1[ids[p]], g);
                REF.matmul(xt, 1, w3[ids[p]], u);
                Functions.siluMul(g, u, I);
                REF.matmul(g, 1, w2[ids[p]], y);
                System.arraycopy(y, 0, ref, p * h, h);
            }
            DeviceOps.ExpertSet set = d.experts(w1, w3, w2);
            try (Buffer xb = d.upload(x); Buffer ib = d.ints(rows * K); Buffer act = poison(d, rows * K * I);
                 Buffer out = poison(d, rows * K * h)) {
                d.write(ib, ids, rows * K);
                d.runExperts(set, xb, rows, K, ib, act, out);
                assertClose("experts " + dt + " " + Arrays.toString(sh), ref, fetch(d, out, rows * K * h), rows * K * h);
            }
        }
    }

    private static ModelConfig config(int experts, int topK) {
        return new ModelConfig("minimax_m1", 16, experts, 1, 1, 1, 4, 4, 10000.0, experts, topK, 4, 1e-5,
                new boolean[]{false}, 1f, 1f, 1f, 1f, 1f, 1f, 16, 1024, false);
    }
}
