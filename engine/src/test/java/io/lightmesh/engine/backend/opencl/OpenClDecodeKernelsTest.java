package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.assertClose;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.poisoned;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.random;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.weight;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The decode kernels v2 (resident.cl's "decode kernels v2") where {@code FusedDecodeTest} does not reach: the
 * matrix-vector products of both kernel sets against the host at sizes that hit every loop of the lane-group dot
 * products (8 and 4 loads a lane, the one-load tail, the scalar rows of in % 8 != 0, rows not a multiple of a
 * work-group's), the lightning step with its rows split over several groups, the kernel-set setting, and the
 * device-clock profile. On PoCL the lane sums take the local-memory path (no shuffles there); on NVIDIA the
 * shfl.sync one. Tolerance: {@link OpenClTestSupport}'s.
 */
class OpenClDecodeKernelsTest {
    private static ResidentOps d() { return OpenClTestSupport.ops().resident(); }

    private static final ReferenceOps REF = new ReferenceOps();

    private final List<Buffer> open = new ArrayList<>();

    private Buffer up(DeviceOps d, float[] v) {
        Buffer b = d.upload(v);
        open.add(b);
        return b;
    }

    private static float[] fetch(DeviceOps d, Buffer b, int n) {
        float[] out = new float[n];
        d.read(b, 0, out, 0, n);
        return out;
    }

    @AfterEach
    void restore() {
        for (Buffer b : open) b.close();
        open.clear();
        d().decodeKernels(null);
        d().decodeWarpRows(0);
        d().decodeV3Rows(-1);
        d().decodeV3Tails(null);
        ((FusedOps) d().fused()).lightningSplits(0);
    }

    /**
     * {out, in, n}: in 2056 (bf16: 257 chunks of 8 = one 8-load pass, one 4-load pass and one tail load a lane),
     * 1032 (129 chunks: 4-load passes and a tail), 264 (33: tails only), 36 and 1001 (scalar rows); outputs not a
     * multiple of 8 rows a group; 1, 3 and 8 rows of x.
     */
    @ParameterizedTest
    @CsvSource({"F32,v2,1", "BF16,v2,1", "F32,v2,2", "BF16,v2,2", "F32,v1,1", "BF16,v1,1"})
    void matrixVectorProductsMatchTheHost(String dt, String kernels, int warpRows) {
        ResidentOps d = d();
        assertEquals(kernels, d.decodeKernels(kernels));
        assertEquals(warpRows, d.decodeWarpRows(warpRows));
        DType type = DType.valueOf(dt);
        Random rnd = new Random(41);
        int[][] shapes = {{13, 2056, 1}, {21, 1032, 3}, {9, 264, 8}, {7, 36, 5}, {17, 1001, 2}, {40, 2048, 8}};
        for (int[] sh : shapes) {
            int out = sh[0], in = sh[1], n = sh[2];
            Tensor w = weight(rnd, type, out, in);
            float[] x = random(rnd, n * in, 1f), ref = new float[n * out];
            REF.matmul(x, n, w, ref);
            Buffer xb = up(d, x), yb = up(d, poisoned(n * out));
            d.matmul(xb, n, w, yb);
            assertClose("matvec " + kernels + " rows " + warpRows + " " + dt + " " + Arrays.toString(sh), ref, fetch(d, yb, n * out), n * out);
        }
    }

    /**
     * dec_lightning2 with each head's rows split over 1, 2, 3, 7 and 16 groups (rows per split not a multiple of the
     * four slices, D not a multiple of 64 columns) against the per-operation step and norm-gate: outputs and states.
     */
    @Test
    void lightningStepSplitByRowsMatchesThePerOperationStep() {
        ResidentOps d = d();
        d.decodeKernels("v2");
        FusedOps f = (FusedOps) d.fused();
        assertNotNull(f);
        Random rnd = new Random(42);
        for (int splits : new int[]{1, 2, 3, 7, 16}) {
            f.lightningSplits(splits);
            for (int[] sh : new int[][]{{1, 2, 128}, {3, 3, 100}, {8, 1, 64}}) {
                int n = sh[0], H = sh[1], D = sh[2], HD = H * D, layers = 2, layer = 1, slots = 2 * n + 1;
                long stride = (H * D * D + d.viewAlignment() - 1) / d.viewAlignment() * d.viewAlignment();
                int[] slot = new int[n];
                for (int t = 0; t < n; t++) slot[t] = (t * 2 + 1) % slots; // distinct, scattered
                float[] decay = new float[H];
                for (int h = 0; h < H; h++) decay[h] = 0.01f + 0.3f * rnd.nextFloat();
                float[] poolInit = random(rnd, (int) (slots * layers * stride), 0.5f);
                Buffer pool = up(d, poolInit), db = up(d, decay), normW = up(d, random(rnd, HD, 1f));
                Buffer[] own = new Buffer[n];
                for (int t = 0; t < n; t++) {
                    int at = (int) ((slot[t] * layers + layer) * stride);
                    own[t] = up(d, Arrays.copyOfRange(poolInit, at, at + H * D * D));
                }
                for (int step = 0; step < 2; step++) {
                    Buffer qkv = up(d, random(rnd, n * 3 * HD, 1f)), gate = up(d, random(rnd, n * HD, 1f));
                    Buffer want = up(d, poisoned(n * HD)), got = up(d, poisoned(n * HD));
                    for (int t = 0; t < n; t++) d.lightningStep(qkv, t, H, D, db, own[t], want);
                    d.normGate(want, n, HD, normW, 1e-6f, gate);
                    f.rows(new int[n], new int[n], slot, n);
                    f.lightning(qkv, n, H, D, db, pool, layer, layers, stride, got, gate, normW, 1e-6f);
                    String what = "lightning splits " + splits + " " + Arrays.toString(sh) + " step " + step;
                    assertClose(what + " out", fetch(d, want, n * HD), fetch(d, got, n * HD), n * HD);
                    float[] all = fetch(d, pool, (int) (slots * layers * stride));
                    for (int t = 0; t < n; t++) {
                        int at = (int) ((slot[t] * layers + layer) * stride);
                        assertClose(what + " state of row " + t, fetch(d, own[t], H * D * D),
                                Arrays.copyOfRange(all, at, at + H * D * D), H * D * D);
                    }
                }
            }
        }
    }

    /**
     * The fused projections and experts with two weight rows a lane group where a pair of rows straddles two weights
     * (q | k | v, qkv | gate at an odd row) or the last row has no partner (odd outputs), against v1.
     */
    @ParameterizedTest
    @CsvSource({"F32", "BF16"})
    void twoRowsALaneGroupAtOddRowsMatchV1(String dt) {
        ResidentOps d = d();
        FusedOps f = (FusedOps) d.fused();
        DType type = DType.valueOf(dt);
        Random rnd = new Random(44);
        // lightning projections: HD = 15 (qkv 45 rows, then gate 15: rows 44 and 45 are one pair), in 64 and 33
        for (int in : new int[]{64, 33}) {
            int n = 3, HD = 15;
            Tensor wQkv = weight(rnd, type, 3 * HD, in), wGate = weight(rnd, type, HD, in);
            Buffer x = up(d, random(rnd, n * in, 1f));
            float[][] qkv = new float[2][], gate = new float[2][];
            for (int v = 0; v < 2; v++) {
                d.decodeKernels(v == 0 ? "v1" : "v2");
                d.decodeWarpRows(v == 0 ? 1 : 2);
                Buffer q = up(d, poisoned(n * 3 * HD)), g = up(d, poisoned(n * HD));
                f.lightningProjections(x, n, wQkv, wGate, q, g);
                qkv[v] = fetch(d, q, n * 3 * HD);
                gate[v] = fetch(d, g, n * HD);
            }
            assertClose("qkv " + dt + " in " + in, qkv[0], qkv[1], n * 3 * HD);
            assertClose("gate " + dt + " in " + in, gate[0], gate[1], n * HD);
        }
        // experts: hidden 33 (odd rows of the down projection; gate and up on scalar rows), inter 24 (down: vector)
        int E = 4, K = 2, h = 33, I = 24, n = 5;
        Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E];
        for (int e = 0; e < E; e++) {
            w1[e] = weight(rnd, type, I, h);
            w3[e] = weight(rnd, type, I, h);
            w2[e] = weight(rnd, type, h, I);
        }
        int[] idv = new int[n * K];
        for (int t = 0; t < n; t++) System.arraycopy(rnd.ints(0, E).distinct().limit(K).toArray(), 0, idv, t * K, K);
        Buffer ids = d.ints(n * K);
        open.add(ids);
        d.write(ids, idv, n * K);
        Buffer wts = up(d, random(rnd, n * K, 1f)), normW = up(d, random(rnd, h, 1f));
        float[] x0 = random(rnd, n * h, 1f);
        DeviceOps.ExpertSet set = d.experts(w1, w3, w2);
        try {
            float[][] got = new float[2][];
            for (int v = 0; v < 2; v++) {
                d.decodeKernels(v == 0 ? "v1" : "v2");
                d.decodeWarpRows(v == 0 ? 1 : 2);
                Buffer x = up(d, x0), act = up(d, poisoned(n * K * I)), pairs = up(d, poisoned(n * K * h));
                f.experts(set, x, n, K, ids, wts, act, pairs, 0.9f, 1.1f, normW, 1e-5f);
                got[v] = fetch(d, x, n * h);
            }
            assertClose("experts " + dt, got[0], got[1], n * h);
        } finally {
            d.release(set);
        }
    }

    /**
     * The v3 matrix-vector forms (n1 at one row of x, n8 above; 1, 2 and 4 weight rows a lane group) against the host
     * at sizes that reach every loop of their dot products: in 2056 (257 chunks: the 16-load pass, then single
     * chunks), 1032 (the half pass and a tail), 2048 and 1024 (the model's), 264 (tails only); 36 keeps v2 (scalar).
     */
    @ParameterizedTest
    @CsvSource({"0", "1", "2", "4"})
    void v3MatrixVectorProductsMatchTheHost(int rows) {
        ResidentOps d = d();
        assertEquals("v3", d.decodeKernels("v3"), "decode_v3.cl: " + d.v3WhyNot());
        assertEquals(rows, d.decodeV3Rows(rows));
        Random rnd = new Random(45);
        int[][] shapes = {{13, 2056, 1}, {21, 1032, 3}, {9, 264, 8}, {7, 36, 5}, {40, 2048, 8}, {35, 1024, 1},
                {17, 2048, 2}};
        for (int[] sh : shapes) {
            int out = sh[0], in = sh[1], n = sh[2];
            Tensor w = weight(rnd, DType.BF16, out, in);
            float[] x = random(rnd, n * in, 1f), ref = new float[n * out];
            REF.matmul(x, n, w, ref);
            Buffer xb = up(d, x), yb = up(d, poisoned(n * out));
            d.matmul(xb, n, w, yb);
            assertClose("matvec v3 rows " + rows + " " + Arrays.toString(sh), ref, fetch(d, yb, n * out), n * out);
        }
    }

    /**
     * The fused step's products at the model's row lengths (hidden 2048, expert intermediate 1024, so that the v3
     * dot products' 16-load passes run), v3 with 1, 2 and 4 rows a lane group against v2, at 1 and 8 rows of x:
     * the lightning projections, the output projection with the norm and router, and the experts (gate/up, down, the
     * residual and next norm), with the norms and router in the products' tails (d3_out_route, d3_down_norm) or apart.
     */
    @ParameterizedTest
    @CsvSource({"1,1,true", "2,1,true", "4,1,true", "1,8,true", "2,8,true", "4,8,true", "0,5,true", "0,1,false",
            "0,8,false"})
    void v3FusedProductsAtModelRowLengthsMatchV2(int rows, int n, boolean tails) {
        ResidentOps d = d();
        FusedOps f = (FusedOps) d.fused();
        Random rnd = new Random(46);
        int h = 2048, HD = 256, E = 8, K = 2, I = 1024;
        Tensor wQkv = weight(rnd, DType.BF16, 3 * HD, h), wGate = weight(rnd, DType.BF16, HD, h);
        Tensor wo = weight(rnd, DType.BF16, h, HD), router = weight(rnd, DType.BF16, E, h);
        Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E];
        for (int e = 0; e < E; e++) {
            w1[e] = weight(rnd, DType.BF16, I, h);
            w3[e] = weight(rnd, DType.BF16, I, h);
            w2[e] = weight(rnd, DType.BF16, h, I);
        }
        float[] x0 = random(rnd, n * h, 1f), o = random(rnd, n * HD, 1f), normW = random(rnd, h, 1f);
        DeviceOps.ExpertSet set = d.experts(w1, w3, w2);
        try {
            float[][][] got = new float[2][][];
            for (int v = 0; v < 2; v++) {
                assertEquals(v == 0 ? "v2" : "v3", d.decodeKernels(v == 0 ? "v2" : "v3"), "decode_v3.cl: " + d.v3WhyNot());
                d.decodeV3Rows(rows);
                d.decodeV3Tails(tails);
                Buffer x = up(d, x0), q = up(d, poisoned(n * 3 * HD)), g = up(d, poisoned(n * HD));
                f.lightningProjections(x, n, wQkv, wGate, q, g);
                Buffer ob = up(d, o), a = up(d, poisoned(n * h)), nw = up(d, normW);
                Buffer ids = d.ints(n * K), wts = up(d, poisoned(n * K));
                open.add(ids);
                f.outputAndRoute(ob, n, wo, a, x, 0.9f, 1.1f, nw, 1e-5f, router, K, ids, wts, null, 0);
                Buffer act = up(d, poisoned(n * K * I)), pairs = up(d, poisoned(n * K * h));
                f.experts(set, x, n, K, ids, wts, act, pairs, 0.9f, 1.1f, nw, 1e-5f);
                int[] idv = new int[n * K];
                d.read(ids, idv, n * K);
                float[] idf = new float[n * K];
                for (int i = 0; i < idv.length; i++) idf[i] = idv[i];
                got[v] = new float[][]{fetch(d, q, n * 3 * HD), fetch(d, g, n * HD), fetch(d, a, n * h), idf,
                        fetch(d, wts, n * K), fetch(d, act, n * K * I), fetch(d, x, n * h)};
            }
            String[] names = {"qkv", "gate", "output projection", "router ids", "router weights", "experts' act",
                    "experts + residual + norm"};
            for (int i = 0; i < names.length; i++) {
                if (i == 3) assertArrayEquals(got[0][i], got[1][i], "router ids, rows " + rows + " n " + n);
                else assertClose(names[i] + " v3 rows " + rows + " n " + n + " tails " + tails, got[0][i], got[1][i], got[0][i].length);
            }
        } finally {
            d.release(set);
        }
    }

    /**
     * A lightning layer in one launch (d3_proj_light: projections, each head's step in the last group of its rows, the
     * norm and gate in the last group of all) against the projections and the step as two v2 launches, at one row:
     * qkv, gate, the output and the state, two steps in a row; heads of 40 (their qkv rows straddle the groups) and
     * of 128 with in 2048; 1, 2 and 4 rows a lane group. Not taken at two rows, nor with v2.
     */
    @ParameterizedTest
    @CsvSource({"1", "2", "4"})
    void v3LightningLayerInOneLaunchMatchesV2(int rows) {
        ResidentOps d = d();
        FusedOps f = (FusedOps) d.fused();
        Random rnd = new Random(47);
        for (int[] sh : new int[][]{{64, 3, 40}, {2048, 2, 128}, {96, 4, 32}}) {
            int in = sh[0], H = sh[1], D = sh[2], HD = H * D, layers = 2, layer = 1, slots = 3, slot = 2;
            long stride = (H * D * D + d.viewAlignment() - 1) / d.viewAlignment() * d.viewAlignment();
            Tensor wQkv = weight(rnd, DType.BF16, 3 * HD, in), wGate = weight(rnd, DType.BF16, HD, in);
            float[] decay = new float[H];
            for (int h = 0; h < H; h++) decay[h] = 0.01f + 0.3f * rnd.nextFloat();
            float[] poolInit = random(rnd, (int) (slots * layers * stride), 0.5f), normW = random(rnd, HD, 1f);
            float[][] xs = {random(rnd, in, 1f), random(rnd, in, 1f)};
            float[][][] got = new float[2][][];
            for (int v = 0; v < 2; v++) {
                assertEquals(v == 0 ? "v2" : "v3", d.decodeKernels(v == 0 ? "v2" : "v3"), "decode_v3.cl: " + d.v3WhyNot());
                d.decodeV3Rows(rows);
                Buffer pool = up(d, poolInit), db = up(d, decay), nw = up(d, normW);
                List<float[]> out = new ArrayList<>();
                for (float[] x0 : xs) {
                    Buffer x = up(d, x0), qkv = up(d, poisoned(3 * HD)), g = up(d, poisoned(HD)), o = up(d, poisoned(HD));
                    f.rows(new int[1], new int[1], new int[]{slot}, 1);
                    boolean one = f.lightningLayer(x, 1, wQkv, wGate, qkv, g, H, D, db, pool, layer, layers, stride, o, nw, 1e-6f);
                    assertEquals(v == 1, one, "one launch with v3 only");
                    if (!one) {
                        f.lightningProjections(x, 1, wQkv, wGate, qkv, g);
                        f.lightning(qkv, 1, H, D, db, pool, layer, layers, stride, o, g, nw, 1e-6f);
                    }
                    out.add(fetch(d, qkv, 3 * HD));
                    out.add(fetch(d, g, HD));
                    out.add(fetch(d, o, HD));
                }
                out.add(fetch(d, pool, (int) (slots * layers * stride)));
                got[v] = out.toArray(new float[0][]);
            }
            String[] names = {"qkv", "gate", "out", "qkv 2", "gate 2", "out 2", "states"};
            for (int i = 0; i < names.length; i++) {
                assertClose("lightning layer " + names[i] + " rows " + rows + " " + Arrays.toString(sh), got[0][i], got[1][i],
                        got[0][i].length);
            }
            Buffer x2 = up(d, random(rnd, 2 * in, 1f));
            assertFalse(f.lightningLayer(x2, 2, wQkv, wGate, up(d, poisoned(6 * HD)), up(d, poisoned(2 * HD)), H, D,
                    up(d, decay), up(d, poolInit), layer, layers, stride, up(d, poisoned(2 * HD)), up(d, normW), 1e-6f),
                    "two rows: the two launches");
        }
    }

    @Test
    void kernelSetSettingTakesV1V2OrV3() {
        assertEquals("v1", d().decodeKernels("v1"));
        assertEquals("v2", d().decodeKernels(" V2 "));
        assertEquals("v3", d().decodeKernels("v3"), "decode_v3.cl: " + d().v3WhyNot());
        assertNull(d().v3WhyNot());
        assertTrue(d().decodeKernelLine().startsWith("v3"), d().decodeKernelLine());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> d().decodeKernels("v4"));
        assertTrue(e.getMessage().contains("v1, v2 or v3"), e.getMessage());
        assertNull(d().v3BuildLog("-D D3_NO_FUSED=1"), "the build's fallback without the fused forms");
        e = assertThrows(IllegalArgumentException.class, () -> d().decodeV3Rows(3));
        assertTrue(e.getMessage().contains("auto, 1, 2 or 4"), e.getMessage());
        assertEquals(2, d().decodeWarpRows(2));
        e = assertThrows(IllegalArgumentException.class, () -> d().decodeWarpRows(3));
        assertTrue(e.getMessage().contains("1 or 2"), e.getMessage());
    }

    /**
     * The device-clock profile (a second context on the same device, its queue with profiling): the same results
     * as without it, bit for bit, and a table of the launches made since the last one, with the bytes' rate where
     * the launcher gave them; without a profile mode there is no table.
     */
    @Test
    void eventProfileTimesEveryLaunchAndChangesNoResult() {
        ResidentOps plain = d();
        assertNull(plain.kernelTimes(), "no profile without -Dlightmesh.opencl.profile");
        assertThrows(IllegalArgumentException.class, () -> new ResidentOps(OpenClTestSupport.ops().deviceId(), "often"));
        Random rnd = new Random(43);
        int out = 19, in = 264, n = 3;
        Tensor w = weight(rnd, DType.BF16, out, in);
        float[] x = random(rnd, n * in, 1f);
        String form = plain.decodeProductsForm();
        try (ResidentOps events = new ResidentOps(OpenClTestSupport.ops().deviceId(), "events")) {
            assertEquals(0, events.kernelTimes().launches(), "the start-up probes' launches are left out");
            float[][] got = new float[2][];
            int i = 0;
            for (ResidentOps d : new ResidentOps[]{plain, events}) {
                d.decodeKernels("v2");
                d.decodeProducts("off"); // the v2 products, whatever -Dlightmesh.decode.tc says
                try (Buffer xb = d.upload(x); Buffer yb = d.upload(poisoned(n * out))) {
                    for (int rep = 0; rep < 3; rep++) d.matmul(xb, n, w, yb);
                    got[i++] = fetch(d, yb, n * out);
                }
            }
            assertArrayEquals(got[0], got[1], "the profile changes no result");
            DeviceOps.KernelTimes t = events.kernelTimes();
            assertNotNull(t);
            assertEquals(3, t.launches(), t.table());
            assertTrue(t.kernelNanos() > 0 && t.spanNanos() >= t.kernelNanos() / 2, t.table());
            String row = Arrays.stream(t.table().split("\n")).filter(l -> l.trim().startsWith("matvec2_bf16v"))
                    .findFirst().orElseThrow(() -> new AssertionError("no matvec2_bf16v row in\n" + t.table()));
            String[] cols = row.trim().split("\\s+");
            assertEquals("3", cols[1], row);                        // launches
            assertTrue(Double.parseDouble(cols[cols.length - 1]) > 0, row); // GB/s: the launcher gave its bytes
            assertEquals(0, events.kernelTimes().launches(), "the table resets");
        } finally {
            plain.decodeProducts(form); // back to the form before, for the tests after
        }
    }
}
