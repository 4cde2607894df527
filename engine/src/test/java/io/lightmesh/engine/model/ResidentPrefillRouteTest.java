package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.DeviceOps.ExpertSet;
import io.lightmesh.engine.backend.opencl.OpenClTestSupport;
import io.lightmesh.engine.backend.opencl.ResidentOps;
import io.lightmesh.engine.backend.opencl.TensorCoreTestHook;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.SplittableRandom;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.random;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.weight;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Prefill routed on the device (-Dlightmesh.prefill.deviceRoute=true: {@code prefill_route.cl}'s router and grouping,
 * the grouped launches over the device's table) against the host-table form it replaces: the experts' outputs bit for
 * bit on uneven loads (an expert with no rows, every row on one expert, every row on two, past one 128-row tile), on
 * fp32 products and on tensor cores (emulated on PoCL); a whole prefill's logits and state within 1e-4 on the fp32 GEMM,
 * the routing observer's counts equal, and a fresh prompt's prefill with one host sync (its logits' read).
 */
class ResidentPrefillRouteTest {
    private static final int E = 8, H = 64, I = 40;

    enum Dt { F32, BF16 }

    private static ResidentOps r() {
        ResidentOps r = OpenClTestSupport.ops().resident();
        Assumptions.assumeTrue(r != null, "resident path off (-Dlightmesh.opencl.resident=false)");
        return r;
    }

    /** {name, rows, k} and router logits [rows, E] that make the load named. */
    private record Load(String name, int rows, int k, float[] logits) {}

    private interface Bias { float at(int row, int expert); }

    private static Load load(String name, int rows, int k, Random rnd, Bias bias) {
        float[] lg = new float[rows * E];
        for (int t = 0; t < rows; t++) for (int e = 0; e < E; e++) lg[t * E + e] = rnd.nextFloat() * 4 - 2 + bias.at(t, e);
        return new Load(name, rows, k, lg);
    }

    private static Load[] loads(Random rnd) {
        return new Load[]{
                load("random 300 rows top-2", 300, 2, rnd, (t, e) -> 0f),
                load("expert 0 and 4 get none", 150, 2, rnd, (t, e) -> e == 0 || e == 4 ? -40f : 0f),
                load("all rows on expert 5, top-1", 200, 1, rnd, (t, e) -> e == 5 ? 20f : 0f),
                load("all rows on experts 2 and 6", 170, 2, rnd, (t, e) -> e == 2 || e == 6 ? 20f : 0f),
                load("nine rows", 9, 2, rnd, (t, e) -> 0f)};
    }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void routedExpertsEqualTheHostTableOnUnevenLoads(Dt dt) {
        ResidentOps d = r();
        boolean real = d.tensorCores().available();
        Random rnd = new Random(71 + dt.ordinal());
        DType t = dt == Dt.F32 ? DType.F32 : DType.BF16;
        Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E];
        for (int e = 0; e < E; e++) {
            w1[e] = weight(rnd, t, I, H);
            w3[e] = weight(rnd, t, I, H);
            w2[e] = weight(rnd, t, H, I);
        }
        ExpertSet set = d.experts(w1, w3, w2);
        GroupedExperts.Placement stacked = new GroupedExperts.Placement() {
            public ExpertSet set(int e) { return set; }

            public int slot(int e) { return e; }
        };
        try {
            for (boolean tc : new boolean[]{false, true}) {
                if (tc && !real) assertTrue(TensorCoreTestHook.emulate(d), "emulated tensor-core kernels");
                assertEquals(tc, d.useTensorCores(tc));
                try {
                    assertTrue(d.routesOnDevice(E, 2), "route kernels in use");
                    for (Load ld : loads(rnd)) {
                        int n = ld.rows(), K = ld.k(), pk = n * K;
                        String what = dt + (tc ? " tensor cores " : " fp32 ") + ld.name();
                        float[] x = random(rnd, n * H, 1f);
                        float[] host = new float[pk * H], routed = new float[pk * H];
                        float[] hostW = new float[pk], routedW = new float[pk];
                        try (Buffer lg = d.upload(ld.logits()); Buffer bx = d.upload(x); Buffer ids = d.ints(pk);
                             Buffer wts = d.floats(pk); Buffer pairs = d.upload(OpenClTestSupport.poisoned(pk * H));
                             Buffer act = d.floats((long) pk * I); Buffer tokens = d.ints(pk); Buffer pairIdx = d.ints(pk);
                             Buffer xe = d.floats((long) pk * H); Buffer up = d.floats((long) pk * I);
                             Buffer de = d.floats((long) pk * H); Buffer table = d.ints(d.routeTableLength(n, E, K))) {
                            // the existing form: route, the ids to the host, the host's table
                            d.route(lg, n, E, K, ids, wts);
                            int[] hostIds = new int[pk];
                            d.read(ids, hostIds, pk);
                            GroupedExperts.run(d, stacked, E, H, I, bx, n, K, hostIds,
                                    new GroupedExperts.Work(tokens, pairIdx, xe, act, up, de), pairs, GroupedExperts.Mode.LAUNCH);
                            d.read(pairs, 0, host, 0, host.length);
                            d.read(wts, 0, hostW, 0, pk);
                            // routed on the device: no host step between the router and the experts
                            d.write(pairs, 0, OpenClTestSupport.poisoned(pk * H), 0, pk * H);
                            long syncs = d.hostSyncs();
                            d.routeAndGroup(lg, n, E, K, ids, wts, table);
                            d.groupedExpertsRouted(set, table, n, K, bx, act, pairs);
                            assertEquals(syncs, d.hostSyncs(), what + ": no host sync");
                            d.read(pairs, 0, routed, 0, routed.length);
                            d.read(wts, 0, routedW, 0, pk);
                        }
                        assertArrayEquals(host, routed, what + ": experts' outputs as the host table's");
                        assertArrayEquals(hostW, routedW, what + ": router weights");
                    }
                } finally {
                    if (tc && !real) TensorCoreTestHook.drop(d);
                    d.useTensorCores(false);
                }
            }
        } finally {
            d.release(set);
        }
    }

    @TempDir static Path dir;

    /** Lightning states and the KV rows of a state, flattened (read from the device). */
    private static float[] state(SequenceState s, int layers) {
        float[][] parts = new float[layers][];
        int total = 0;
        for (int l = 0; l < layers; l++) {
            float[] S = s.lightningStateForReading(l);
            if (S != null) {
                parts[l] = S.clone();
            } else {
                KvCache c = s.kvCacheForReading(l);
                int m = c.length() * c.rowWidth();
                parts[l] = new float[2 * m];
                System.arraycopy(c.keys(), 0, parts[l], 0, m);
                System.arraycopy(c.values(), 0, parts[l], m, m);
            }
            total += parts[l].length;
        }
        float[] out = new float[total];
        int at = 0;
        for (float[] p : parts) {
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }

    /**
     * Prefills of 40 and 150 tokens and a 150-token prompt continued by 37 more (chunks after a cache): logits and the
     * state within 1e-4 of the host-table form, the observer's counts equal; a fresh 150-token prefill with one host
     * sync routed on the device (more than one a layer without).
     */
    @ParameterizedTest
    @EnumSource(Dt.class)
    void prefillRoutedOnTheDeviceMatchesTheHostTable(Dt dt) throws IOException {
        ResidentOps d = r();
        d.useTensorCores(false);
        Path p = dir.resolve(dt.name());
        SyntheticCheckpoint.write(p, SyntheticCheckpoint.Shape.tiny(), dt == Dt.F32 ? DType.F32 : DType.BF16, 29, true);
        boolean before = ResidentDecoder.deviceRoute();
        try (MiniMaxModel base = MiniMaxModel.load(p, OpenClTestSupport.ops())) {
            int L = base.config().numLayers(), E4 = base.config().numExperts();
            SplittableRandom rnd = new SplittableRandom(11);
            int[][] prompts = {rnd.ints(40, 0, 512).toArray(), rnd.ints(150, 0, 512).toArray(), rnd.ints(37, 0, 512).toArray()};
            float[][] logits = new float[2][], states = new float[2][];
            float[][][] each = new float[2][3][];
            long[][] counts = new long[2][];
            for (int form = 0; form < 2; form++) {
                ResidentDecoder.deviceRoute(form == 1);
                ResidentDecodeTest.Counting obs = new ResidentDecodeTest.Counting(
                        new LocalExperts(base.config(), base.weights(), base.ops()), L, E4);
                MiniMaxModel m = base.withExperts(obs);
                each[form][0] = m.prefill(m.newState(), prompts[0]);
                assertEquals(form == 1, m.lastPrefillRouted(), "routed on the device: form " + form);
                SequenceState s = m.newState();
                each[form][1] = m.prefill(s, prompts[1]);
                each[form][2] = m.prefill(s, prompts[2]);
                states[form] = state(s, L);
                counts[form] = obs.counts;
                assertEquals(0, obs.runs.get(), "the device computed the experts itself");
                logits[form] = each[form][2];
            }
            for (int i = 0; i < 3; i++) {
                ReferenceFixturesTest.assertClose(each[0][i], each[1][i], dt + " logits of prefill " + i, 1e-4);
            }
            ReferenceFixturesTest.assertClose(states[0], states[1], dt + " state after 150 + 37 tokens", 1e-4);
            assertArrayEquals(counts[0], counts[1], "tokens per (layer, expert)");
            // host syncs of a fresh 150-token prompt (no observer: nothing read back but the logits)
            long[] syncs = new long[2];
            for (int form = 0; form < 2; form++) {
                ResidentDecoder.deviceRoute(form == 1);
                long s0 = base.hostSyncs();
                base.prefill(base.newState(), prompts[1]);
                syncs[form] = base.hostSyncs() - s0;
            }
            assertEquals(1, syncs[1], "routed on the device: the logits' read only");
            assertTrue(syncs[0] > L, "the host table: " + syncs[0] + " syncs");
            assertFalse(Arrays.equals(new long[]{0, 0}, syncs));
            // -Dlightmesh.experts.grouped=per-expert keeps its form (to compare), routed on the host
            GroupedExperts.Mode mode = GroupedExperts.mode(GroupedExperts.Mode.PER_EXPERT);
            try {
                ResidentDecoder.deviceRoute(true);
                ReferenceFixturesTest.assertClose(each[0][0], base.prefill(base.newState(), prompts[0]), dt + " per-expert", 1e-4);
                assertFalse(base.lastPrefillRouted(), "per-expert: not routed on the device");
            } finally {
                GroupedExperts.mode(mode);
            }
        } finally {
            ResidentDecoder.deviceRoute(before);
        }
    }
}
