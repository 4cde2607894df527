package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.DeviceOps.ExpertSet;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.opencl.OpenClTestSupport;
import io.lightmesh.engine.backend.opencl.ResidentOps;
import io.lightmesh.engine.backend.opencl.TensorCoreTestHook;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.Random;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.assertClose;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.random;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.weight;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The grouped experts of a device prefill and of expert shards on a device ({@link GroupedExperts}): the launch form
 * (every chosen expert of a set in two launches, {@code experts.cl} / {@code experts_tc.cl}) against the per-expert
 * form (gather, three products, SiLU(g) * u, scatter) and the host formula ({@link ReferenceOps} products and
 * {@link Functions#siluMul}, as {@link LocalExperts} computes), on routings that cross the kernels' edges: experts with
 * no rows, one row, rows past one 128-row tile and not a multiple of it, every row to one expert, skipped pairs (id
 * -1, whose rows must stay as they were), and experts placed in two sets at other slots (one launch pair per set).
 * fp32 products at 1e-4; tensor-core products (emulated on PoCL) at bf16's bound against the host and 1e-4 against
 * the per-expert tensor-core path where every expert has 33+ rows (both round the same activations).
 */
class ResidentGroupedExpertsTest {
    private static final int E = 8, H = 64, I = 40;
    private static final ReferenceOps REF = new ReferenceOps();

    enum Dt { F32, BF16 }

    private static ResidentOps r() {
        ResidentOps r = OpenClTestSupport.ops().resident();
        Assumptions.assumeTrue(r != null, "resident path off (-Dlightmesh.opencl.resident=false)");
        return r;
    }

    /** One layer's experts, their host copies for the reference, and placements over them. */
    private record Layer(Tensor[] w1, Tensor[] w3, Tensor[] w2) {
        static Layer random(Random rnd, Dt dt, int h, int inter) {
            DType t = dt == Dt.F32 ? DType.F32 : DType.BF16;
            Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E];
            for (int e = 0; e < E; e++) {
                w1[e] = weight(rnd, t, inter, h);
                w3[e] = weight(rnd, t, inter, h);
                w2[e] = weight(rnd, t, h, inter);
            }
            return new Layer(w1, w3, w2);
        }

        /** pairs[p] = W2_e (SiLU(W1_e x_t) * (W3_e x_t)), t = p / K, e = ids[p], on the host; NaN for id -1. */
        float[] reference(float[] x, int n, int K, int[] ids, int h, int inter) {
            float[] out = new float[n * K * h], g = new float[inter], u = new float[inter], y = new float[h];
            Arrays.fill(out, Float.NaN);
            for (int p = 0; p < n * K; p++) {
                int e = ids[p];
                if (e < 0) continue;
                float[] xt = Arrays.copyOfRange(x, (p / K) * h, (p / K + 1) * h);
                REF.matmul(xt, 1, w1[e], g);
                REF.matmul(xt, 1, w3[e], u);
                Functions.siluMul(g, u, inter);
                REF.matmul(g, 1, w2[e], y);
                System.arraycopy(y, 0, out, p * h, h);
            }
            return out;
        }
    }

    /** The routings: {name, n, K} and their ids. */
    private record Routing(String name, int n, int K, int[] ids) {}

    private static Routing[] routings(Random rnd) {
        // 150 rows: slot 0 always expert 7 (150 rows: one tile and 22), slot 1 expert 1 once (one row), -1 every
        // fifth row, else experts 2..5; experts 0 and 6 get nothing
        int n = 150;
        int[] a = new int[n * 2];
        for (int t = 0; t < n; t++) {
            a[2 * t] = 7;
            a[2 * t + 1] = t == 0 ? 1 : t % 5 == 1 ? -1 : 2 + rnd.nextInt(4);
        }
        // every row to one expert (K = 1), 130 rows
        int[] b = new int[130];
        Arrays.fill(b, 3);
        // a prefill chunk's routing: two distinct experts a row among 8, 300 rows
        int[] c = new int[300 * 2];
        for (int t = 0; t < 300; t++) {
            c[2 * t] = rnd.nextInt(E);
            c[2 * t + 1] = (c[2 * t] + 1 + rnd.nextInt(E - 1)) % E;
        }
        // a few rows, mostly skipped; one expert named twice in a row (a shard fills held-elsewhere slots so)
        int[] d = {-1, -1, 4, 4, -1, 0, 2, -1, -1, -1, 6, -1, -1, -1, 5, 5, -1, -1, 1, 1};
        return new Routing[]{new Routing("150 rows, ragged", n, 2, a), new Routing("all to one", 130, 1, b),
                new Routing("300 rows top-2", 300, 2, c), new Routing("10 rows, skips", 10, 2, d),
                new Routing("all skipped", 3, 2, new int[]{-1, -1, -1, -1, -1, -1})};
    }

    /** A layer's stacked set: expert e at slot e. */
    private static GroupedExperts.Placement stacked(ExpertSet set) {
        return new GroupedExperts.Placement() {
            public ExpertSet set(int e) { return set; }

            public int slot(int e) { return e; }
        };
    }

    /** Experts in two sets at other slots: odd experts in `odd` (slot e / 2), even ones in `even` at slot 3 - e / 2. */
    private static GroupedExperts.Placement split(ExpertSet odd, ExpertSet even) {
        return new GroupedExperts.Placement() {
            public ExpertSet set(int e) { return e % 2 == 1 ? odd : even; }

            public int slot(int e) { return e % 2 == 1 ? e / 2 : 3 - e / 2; }
        };
    }

    /** Runs GroupedExperts in {@code mode}; returns the pairs [n*K, h] (NaN where unwritten) and the launches it took. */
    private static float[] run(ResidentOps d, GroupedExperts.Placement where, Routing rt, float[] x, int h, int inter,
                               GroupedExperts.Mode mode, long[] launches) {
        int n = rt.n(), K = rt.K(), pk = n * K;
        try (Buffer bx = d.upload(x); Buffer pairs = d.upload(OpenClTestSupport.poisoned(pk * h));
             Buffer tokens = d.ints(pk); Buffer pairIdx = d.ints(pk); Buffer xe = d.floats((long) pk * h);
             Buffer act = d.floats((long) pk * inter); Buffer up = d.floats((long) pk * inter);
             Buffer de = d.floats((long) pk * h)) {
            long before = d.launches();
            GroupedExperts.run(d, where, E, h, inter, bx, n, K, rt.ids(), new GroupedExperts.Work(tokens, pairIdx, xe,
                    act, up, de), pairs, mode);
            launches[0] = d.launches() - before;
            float[] out = new float[pk * h];
            d.read(pairs, 0, out, 0, out.length);
            return out;
        }
    }

    /** The rows of pairs with id >= 0 (the compared ones); rows of id -1 must still be NaN (untouched). */
    private static float[] chosen(String what, float[] pairs, int[] ids, int h) {
        int m = 0;
        for (int id : ids) if (id >= 0) m++;
        float[] out = new float[m * h];
        int at = 0;
        for (int p = 0; p < ids.length; p++) {
            if (ids[p] >= 0) {
                System.arraycopy(pairs, p * h, out, at, h);
                at += h;
            } else {
                for (int i = 0; i < h; i++) {
                    if (!Float.isNaN(pairs[p * h + i])) fail(what + ": skipped pair " + p + " was written");
                }
            }
        }
        return out;
    }

    private static void assertSame(String what, float[] want, float[] got, int[] ids, int h) {
        float[] a = chosen(what + " (reference)", want, ids, h), b = chosen(what, got, ids, h);
        if (a.length > 0) assertClose(what, a, b, a.length);
    }

    /** Sets in use: 2 launches each in the launch form (none when every pair is skipped). */
    private static long setsUsed(GroupedExperts.Placement where, int[] ids) {
        return Arrays.stream(ids).filter(e -> e >= 0).mapToObj(where::set).distinct().count();
    }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void launchFormMatchesPerExpertAndHostOnFp32Products(Dt dt) {
        ResidentOps d = r();
        d.useTensorCores(false);
        Random rnd = new Random(41 + dt.ordinal());
        Layer layer = Layer.random(rnd, dt, H, I);
        ExpertSet all = d.experts(layer.w1, layer.w3, layer.w2);
        Tensor[][] odd = new Tensor[3][4], even = new Tensor[3][4];
        for (int e = 0; e < E; e++) {  // the split placement's sets, same weights
            Tensor[][] into = e % 2 == 1 ? odd : even;
            int slot = e % 2 == 1 ? e / 2 : 3 - e / 2;
            into[0][slot] = layer.w1[e];
            into[1][slot] = layer.w3[e];
            into[2][slot] = layer.w2[e];
        }
        ExpertSet oddSet = d.experts(odd[0], odd[1], odd[2]), evenSet = d.experts(even[0], even[1], even[2]);
        try {
            for (Routing rt : routings(rnd)) {
                float[] x = random(rnd, rt.n() * H, 1f);
                float[] want = layer.reference(x, rt.n(), rt.K(), rt.ids(), H, I);
                long[] launches = new long[1];
                String what = dt + " " + rt.name();
                for (GroupedExperts.Placement where : new GroupedExperts.Placement[]{stacked(all), split(oddSet, evenSet)}) {
                    float[] grouped = run(d, where, rt, x, H, I, GroupedExperts.Mode.LAUNCH, launches);
                    assertSame(what + " launch form vs host", want, grouped, rt.ids(), H);
                    assertEquals(2 * setsUsed(where, rt.ids()), launches[0], what + ": two launches a set in use");
                    float[] perExpert = run(d, where, rt, x, H, I, GroupedExperts.Mode.PER_EXPERT, launches);
                    assertSame(what + " per-expert form vs host", want, perExpert, rt.ids(), H);
                    assertSame(what + " launch vs per-expert form", perExpert, grouped, rt.ids(), H);
                }
            }
        } finally {
            for (ExpertSet s : new ExpertSet[]{all, oddSet, evenSet}) d.release(s);
        }
    }

    /**
     * Tensor cores (the real kernels on NVIDIA, else emulated): the launch form within bf16's bound of the host
     * (relative L2 <= 1e-2) and, where every chosen expert has 33+ rows (so the per-expert form's products run on
     * tensor cores too, not the matrix-vector kernel), within 1e-4 of the per-expert form.
     */
    @ParameterizedTest
    @EnumSource(Dt.class)
    void launchFormOnTensorCores(Dt dt) {
        ResidentOps d = r();
        boolean real = d.tensorCores().available();
        if (!real) {
            // (NVIDIA runs the real kernels unless -Dlightmesh.opencl.tensorCores=false: OpenClTensorCoreTest asserts it)
            assertTrue(TensorCoreTestHook.emulate(d), "emulated tensor-core kernels");
        }
        try {
            assertTrue(d.useTensorCores(true));
            assertTrue(d.groupedExpertsOnTensorCores(), "grouped experts on tensor cores");
            Random rnd = new Random(43 + dt.ordinal());
            Layer layer = Layer.random(rnd, dt, H, I);
            ExpertSet all = d.experts(layer.w1, layer.w3, layer.w2);
            try {
                for (int form : new int[]{1, 2}) {  // v1 tiles; v2 (cp.async, ldmatrix: bf16 weights, else v1)
                d.groupedV2(form == 2);
                assertEquals(form, d.groupedForm(), "the form chosen");
                for (Routing rt : routings(rnd)) {
                    float[] x = random(rnd, rt.n() * H, 1f);
                    float[] want = layer.reference(x, rt.n(), rt.K(), rt.ids(), H, I);
                    long[] launches = new long[1];
                    String what = dt + " tensor cores form " + form + " " + rt.name();
                    float[] grouped = run(d, stacked(all), rt, x, H, I, GroupedExperts.Mode.LAUNCH, launches);
                    // two launches a set; v2 with bf16 weights rounds x to bf16 first (one more)
                    assertEquals(launchesPerSet(d, dt) * setsUsed(stacked(all), rt.ids()), launches[0], what + ": launches");
                    float[] a = chosen(what + " ref", want, rt.ids(), H), b = chosen(what, grouped, rt.ids(), H);
                    if (a.length == 0) continue;
                    double err = relErr(a, b);
                    System.out.println(what + ": relative L2 vs host " + err);
                    assertTrue(err <= 1e-2, what + ": relative L2 vs host " + err);
                    int[] perExpert = new int[E];
                    for (int id : rt.ids()) if (id >= 0) perExpert[id]++;
                    if (Arrays.stream(perExpert).allMatch(c -> c == 0 || c >= 33)) {
                        float[] pe = run(d, stacked(all), rt, x, H, I, GroupedExperts.Mode.PER_EXPERT, launches);
                        assertSame(what + " launch vs per-expert form", pe, grouped, rt.ids(), H);
                    }
                }
                }
            } finally {
                d.release(all);
                d.groupedV2(true);
            }
        } finally {
            if (!real) TensorCoreTestHook.drop(d);
            d.useTensorCores(false);
        }
    }

    /**
     * The grouping on the device (from the router's ids there, {@link GroupedExperts.Mode#DEVICE}) gives the host
     * table's results bit for bit (only the order of rows within an expert may differ, which changes no product), in
     * three launches (the table, gate-up, down); on fp32 products and on tensor cores (emulated where there are none).
     */
    @ParameterizedTest
    @EnumSource(Dt.class)
    void deviceGroupingEqualsTheHostTable(Dt dt) {
        ResidentOps d = r();
        boolean real = d.tensorCores().available();
        Random rnd = new Random(53 + dt.ordinal());
        Layer layer = Layer.random(rnd, dt, H, I);
        ExpertSet all = d.experts(layer.w1, layer.w3, layer.w2);
        try {
            for (boolean tc : new boolean[]{false, true}) {
                if (tc && !real) assertTrue(TensorCoreTestHook.emulate(d), "emulated tensor-core kernels");
                assertEquals(tc, d.useTensorCores(tc));
                try {
                    for (Routing rt : routings(rnd)) {
                        float[] x = random(rnd, rt.n() * H, 1f);
                        long[] launches = new long[1];
                        float[] hostTable = run(d, stacked(all), rt, x, H, I, GroupedExperts.Mode.LAUNCH, launches);
                        int pk = rt.n() * rt.K();
                        float[] onDevice = new float[pk * H];
                        try (Buffer bx = d.upload(x); Buffer ids = d.ints(pk);
                             Buffer pairs = d.upload(OpenClTestSupport.poisoned(pk * H));
                             Buffer act = d.floats((long) pk * I)) {
                            d.write(ids, rt.ids(), pk);
                            long before = d.launches();
                            assertTrue(GroupedExperts.runOnDevice(d, all, bx, rt.n(), rt.K(), ids, act, pairs,
                                    GroupedExperts.Mode.DEVICE));
                            assertEquals(1 + launchesPerSet(d, dt), d.launches() - before,
                                    rt.name() + ": table, (x to bf16,) gate-up, down");
                            d.read(pairs, 0, onDevice, 0, onDevice.length);
                        }
                        org.junit.jupiter.api.Assertions.assertArrayEquals(hostTable, onDevice,
                                dt + (tc ? " tensor cores " : " fp32 ") + rt.name() + ": device grouping vs host table");
                    }
                } finally {
                    if (tc && !real) TensorCoreTestHook.drop(d);
                    d.useTensorCores(false);
                }
            }
            assertTrue(!GroupedExperts.runOnDevice(d, all, null, 0, 2, null, null, null, GroupedExperts.Mode.LAUNCH),
                    "only the DEVICE mode groups on the device");
        } finally {
            d.release(all);
        }
    }

    @TempDir static Path dir;

    /**
     * A whole prefill on the device path in each form (chunks of 40 and 150 rows run grouped): logits within 1e-4 of
     * the host reference backend, and a routing observer in front of the experts counts what the host path counts
     * (the device grouping logs the ids on the device and reports them at the end, like the 8-row path).
     */
    @ParameterizedTest
    @EnumSource(Dt.class)
    void prefillInEachFormMatchesTheHost(Dt dt) throws IOException {
        Path p = dir.resolve(dt.name());
        SyntheticCheckpoint.write(p, SyntheticCheckpoint.Shape.tiny(), dt == Dt.F32 ? DType.F32 : DType.BF16, 23, true);
        GroupedExperts.Mode before = GroupedExperts.mode();
        try (MiniMaxModel ref = MiniMaxModel.load(p, new ReferenceOps()); MiniMaxModel base = MiniMaxModel.load(p, OpenClTestSupport.ops())) {
            int L = base.config().numLayers(), E8 = base.config().numExperts();
            SplittableRandom rnd = new SplittableRandom(9);
            int[][] prompts = {rnd.ints(40, 0, 512).toArray(), rnd.ints(150, 0, 512).toArray()};
            ResidentDecodeTest.Counting onRef = new ResidentDecodeTest.Counting(
                    new LocalExperts(ref.config(), ref.weights(), ref.ops()), L, E8);
            MiniMaxModel host = ref.withExperts(onRef);
            float[][] want = new float[prompts.length][];
            for (int i = 0; i < prompts.length; i++) want[i] = host.prefill(host.newState(), prompts[i]);
            for (GroupedExperts.Mode mode : GroupedExperts.Mode.values()) {
                GroupedExperts.mode(mode);
                ResidentDecodeTest.Counting onDev = new ResidentDecodeTest.Counting(
                        new LocalExperts(base.config(), base.weights(), base.ops()), L, E8);
                MiniMaxModel dev = base.withExperts(onDev);
                assertTrue(dev.path().devicePrefill() && !dev.path().remoteExperts(), "device prefill, experts in-process: " + dev.path());
                for (int i = 0; i < prompts.length; i++) {
                    ReferenceFixturesTest.assertClose(want[i], dev.prefill(dev.newState(), prompts[i]),
                            dt + " " + mode + " prefill " + prompts[i].length);
                }
                org.junit.jupiter.api.Assertions.assertArrayEquals(onRef.counts, onDev.counts, mode + ": tokens per (layer, expert)");
                assertEquals(0, onDev.runs.get(), mode + ": the device computed the experts itself");
            }
        } finally {
            GroupedExperts.mode(before);
        }
    }

    /** Launches of one set's grouped experts: gate-up and down, and x's rounding to bf16 in the v2 form. */
    private static long launchesPerSet(ResidentOps d, Dt dt) { return d.groupedForm() == 2 && dt == Dt.BF16 ? 3 : 2; }

    @Test
    void badPlacementsAreClearErrors() {
        ResidentOps d = r();
        Random rnd = new Random(47);
        Layer layer = Layer.random(rnd, Dt.F32, H, I);
        ExpertSet all = d.experts(layer.w1, layer.w3, layer.w2);
        try (Buffer x = d.floats(2L * H); Buffer pairs = d.floats(4L * H)) {
            GroupedExperts.Placement missing = new GroupedExperts.Placement() {
                public ExpertSet set(int e) { return e == 5 ? null : all; }

                public int slot(int e) { return e; }
            };
            GroupedExperts.Work w = new GroupedExperts.Work(d.ints(4), d.ints(4), d.floats(4L * H), d.floats(4L * I),
                    d.floats(4L * I), d.floats(4L * H));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> GroupedExperts.run(d,
                    missing, E, H, I, x, 2, 2, new int[]{0, 5, 1, 2}, w, pairs, GroupedExperts.Mode.LAUNCH));
            assertTrue(e.getMessage().contains("expert 5 is not on this device"), e.getMessage());
            IllegalArgumentException slot = assertThrows(IllegalArgumentException.class, () -> d.groupedExperts(all, 1,
                    new int[]{8}, new int[]{0}, new int[]{1}, new int[]{0}, new int[]{0}, 1, x, w.act(), pairs));
            assertTrue(slot.getMessage().contains("slot 8 of 8"), slot.getMessage());
            for (Buffer b : new Buffer[]{w.groupTokens(), w.groupPairs(), w.xe(), w.act(), w.up(), w.de()}) b.close();
        } finally {
            d.release(all);
        }
    }

    @Test
    void modeSettingNamesItsChoices() {
        String old = System.getProperty("lightmesh.experts.grouped");
        try {
            System.setProperty("lightmesh.experts.grouped", "per-expert");
            assertEquals(GroupedExperts.Mode.PER_EXPERT, GroupedExperts.Mode.configured());
            System.setProperty("lightmesh.experts.grouped", "launch");
            assertEquals(GroupedExperts.Mode.LAUNCH, GroupedExperts.Mode.configured());
            System.setProperty("lightmesh.experts.grouped", "device");
            assertEquals(GroupedExperts.Mode.DEVICE, GroupedExperts.Mode.configured());
            System.setProperty("lightmesh.experts.grouped", "sometimes");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, GroupedExperts.Mode::configured);
            assertTrue(e.getMessage().contains("use launch, device or per-expert"), e.getMessage());
        } finally {
            if (old == null) System.clearProperty("lightmesh.experts.grouped");
            else System.setProperty("lightmesh.experts.grouped", old);
        }
    }

    private static double relErr(float[] ref, float[] got) {
        double dd = 0, nn = 0;
        for (int i = 0; i < ref.length; i++) {
            if (!Float.isFinite(got[i])) return Double.POSITIVE_INFINITY;
            dd += (got[i] - ref[i]) * (double) (got[i] - ref[i]);
            nn += (double) ref[i] * ref[i];
        }
        return Math.sqrt(dd / Math.max(nn, 1e-30));
    }
}
