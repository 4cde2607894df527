package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.opencl.OpenClTestSupport;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.config.ConfigLoader;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.weights.WeightStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Expert shards on a device: {@link DeviceExperts} (weights on the device, one grouped product per chosen expert)
 * against the host path ({@link LocalExperts} on the reference backend), on PoCL in CI: a shard holding half the
 * experts, batches from 1 row (decode) to 70 rows (prefill), skipped slots (-1), holdings that change while it runs.
 */
class DeviceExpertsTest {
    @TempDir static Path dir;

    enum Dt { F32, BF16 }

    private static Path checkpoint(Dt dt) throws IOException {
        Path p = dir.resolve(dt.name());
        if (!p.resolve("config.json").toFile().exists()) {
            SyntheticCheckpoint.write(p, SyntheticCheckpoint.Shape.tiny(), dt == Dt.F32 ? DType.F32 : DType.BF16, 31, true);
        }
        return p;
    }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void groupedProductsOnTheDeviceMatchTheHostPath(Dt dt) throws IOException {
        Path p = checkpoint(dt);
        ModelConfig c = ConfigLoader.load(p.resolve("config.json"));
        int E = c.numExperts(), K = c.topK(), h = c.hiddenSize();
        java.util.function.BiPredicate<Integer, Integer> even = (l, e) -> e % 2 == 0; // this shard: the even experts
        try (WeightStore w = WeightStore.open(p)) {
            var cl = OpenClTestSupport.ops();
            ExpertExecutor shard = LocalExperts.hosting(c, w, cl, even);
            assertInstanceOf(DeviceExperts.class, shard, "a device backend's shard computes on the device");
            LocalExperts host = new LocalExperts(c, w, new ReferenceOps(), even);
            SplittableRandom rnd = new SplittableRandom(5);
            for (int n : new int[]{1, 3, 8, 9, 33, 70}) {
                for (int layer : new int[]{0, c.numLayers() - 1}) {
                    float[] x = new float[n * h];
                    for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
                    int[] ids = new int[n * K];
                    float[] wts = new float[n * K];
                    for (int t = 0; t < n; t++) {
                        for (int j = 0; j < K; j++) {
                            // distinct even experts per row, some slots held elsewhere (-1), as a shard receives them
                            ids[t * K + j] = rnd.nextInt(4) == 0 ? -1 : 2 * ((t + j * 3) % (E / 2));
                            wts[t * K + j] = (float) rnd.nextDouble();
                        }
                    }
                    float[] want = new float[n * h], got = new float[n * h];
                    java.util.Arrays.fill(got, Float.NaN);
                    int[] filled = hostIds(ids, wts);
                    host.run(layer, x, n, K, filled, wts, want);
                    shard.run(layer, x, n, K, ids, wts, got);
                    OpenClTestSupport.assertClose(dt + " n=" + n + " layer " + layer, want, got, want.length);
                    // as ExpertShard calls it: skipped slots filled with a hosted expert of weight 0 (so an expert
                    // may appear twice in a row)
                    java.util.Arrays.fill(got, Float.NaN);
                    shard.run(layer, x, n, K, filled, wts, got);
                    OpenClTestSupport.assertClose(dt + " filled n=" + n + " layer " + layer, want, got, want.length);
                }
            }
            ((DeviceExperts) shard).close();
        }
    }

    /**
     * The small-batch path (matrix-vector MoE kernels, one upload) against the grouped path on the same device and
     * the host path, as the shard calls it (one slot a row, k = 1) and with k = 2 and skipped slots; on fp32 each
     * slot's row equal bit for bit to the in-process decode's kernels (runExperts over the layer's stacked set); the
     * path each call took is counted.
     */
    @ParameterizedTest
    @EnumSource(Dt.class)
    void smallBatchesTakeTheMatrixVectorKernelsAndEqualTheGroupedPath(Dt dt) throws IOException {
        Path p = checkpoint(dt);
        ModelConfig c = ConfigLoader.load(p.resolve("config.json"));
        int E = c.numExperts(), K = c.topK(), h = c.hiddenSize();
        java.util.function.BiPredicate<Integer, Integer> odd = (l, e) -> e % 2 == 1;
        try (WeightStore w = WeightStore.open(p);
             DeviceExperts small = new DeviceExperts(c, w, OpenClTestSupport.ops().resident(), odd, DeviceExperts.SMALL_SLOTS);
             DeviceExperts grouped = new DeviceExperts(c, w, OpenClTestSupport.ops().resident(), odd, 0)) {
            LocalExperts host = new LocalExperts(c, w, new ReferenceOps(), odd);
            SplittableRandom rnd = new SplittableRandom(9);
            int smallCalls = 0, groupedCalls = 0, checked = 0; // checked: extra small calls, bit for bit against the decode's
            for (int n : new int[]{1, 2, 5, 8, 9, 16}) {
                for (int k : new int[]{1, K}) {
                    int layer = rnd.nextInt(c.numLayers());
                    float[] x = new float[n * h];
                    for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
                    int[] ids = new int[n * k];
                    float[] wts = new float[n * k];
                    for (int t = 0; t < n; t++) {
                        for (int j = 0; j < k; j++) {
                            ids[t * k + j] = k > 1 && rnd.nextInt(4) == 0 ? -1 : 1 + 2 * ((t * 3 + j) % (E / 2));
                            wts[t * k + j] = (float) rnd.nextDouble();
                        }
                    }
                    float[] want = new float[n * h], got = new float[n * h], viaGroups = new float[n * h];
                    java.util.Arrays.fill(got, Float.NaN);
                    small.run(layer, x, n, k, ids, wts, got);
                    grouped.run(layer, x, n, k, ids, wts, viaGroups);
                    int[] filled = ids.clone();
                    float[] fw = wts.clone();
                    for (int i = 0; i < filled.length; i++) if (filled[i] < 0) { filled[i] = 1; fw[i] = 0f; }
                    host.run(layer, x, n, k, filled, fw, want);
                    String what = dt + " n=" + n + " k=" + k + " layer " + layer;
                    OpenClTestSupport.assertClose(what, want, got, want.length);
                    OpenClTestSupport.assertClose(what + " grouped", want, viaGroups, want.length);
                    if (dt == Dt.F32 && k == 1) {
                        assertArrayEquals(inProcessDecode(c, w, layer, x, n, ids), unweighted(small, layer, x, n, ids, h),
                                what + ": the shard's rows vs the in-process decode's");
                        checked++;
                    }
                    long slots = java.util.Arrays.stream(ids).filter(e -> e >= 0).count();
                    if (slots > DeviceExperts.SMALL_SLOTS) groupedCalls++;
                    else if (slots > 0) smallCalls++; // a call with no slot computes nothing
                }
            }
            // every call of up to SMALL_SLOTS slots took the small path, larger ones (n = 16, k = 2) the grouped one
            assertTrue(smallCalls >= 8 && groupedCalls >= 1, smallCalls + " / " + groupedCalls);
            assertEquals(new DeviceExperts.Paths(smallCalls + checked, groupedCalls), small.paths());
            assertEquals(new DeviceExperts.Paths(0, smallCalls + groupedCalls), grouped.paths(), "lightmesh.shard.smallBatch 0: always grouped");
        }
    }

    /** The small path's rows as they come off the device: weight 1, one slot a row. */
    private static float[] unweighted(DeviceExperts e, int layer, float[] x, int n, int[] ids, int h) {
        float[] ones = new float[n], out = new float[n * h];
        java.util.Arrays.fill(ones, 1f);
        e.run(layer, x, n, 1, ids, ones, out);
        return out;
    }

    /** What the in-process device decode computes for these rows (one slot each): runExperts over the stacked layer. */
    private static float[] inProcessDecode(ModelConfig c, WeightStore w, int layer, float[] x, int n, int[] ids) {
        io.lightmesh.engine.backend.DeviceOps d = OpenClTestSupport.ops().resident();
        int E = c.numExperts(), h = c.hiddenSize(), I = c.intermediateSize();
        io.lightmesh.engine.tensor.Tensor[] w1 = new io.lightmesh.engine.tensor.Tensor[E], w3 = w1.clone(), w2 = w1.clone();
        for (int e = 0; e < E; e++) {
            String p = "model.layers." + layer + ".block_sparse_moe.experts." + e + ".";
            w1[e] = w.get(p + "w1.weight", I, h);
            w3[e] = w.get(p + "w3.weight", I, h);
            w2[e] = w.get(p + "w2.weight", h, I);
        }
        DeviceOps.ExpertSet set = d.experts(w1, w3, w2);
        float[] out = new float[n * h];
        try (DeviceOps.Buffer xb = d.upload(x); DeviceOps.Buffer ib = d.ints(n); DeviceOps.Buffer act = d.floats((long) n * I);
             DeviceOps.Buffer pairs = d.floats((long) n * h)) {
            d.write(ib, ids, n);
            d.runExperts(set, xb, n, 1, ib, act, pairs);
            d.read(pairs, 0, out, 0, n * h);
        } finally {
            d.release(set);
        }
        return out;
    }

    /** LocalExperts has no skipped slots: a -1 slot becomes a hosted expert with weight 0 (as ExpertShard does). */
    private static int[] hostIds(int[] ids, float[] wts) {
        int[] out = ids.clone();
        for (int i = 0; i < out.length; i++) {
            if (out[i] < 0) {
                out[i] = 0;
                wts[i] = 0f;
            }
        }
        return out;
    }

    @Test
    void holdingsFollowTheLivePredicate() throws IOException {
        Path p = checkpoint(Dt.F32);
        ModelConfig c = ConfigLoader.load(p.resolve("config.json"));
        int K = c.topK(), h = c.hiddenSize();
        AtomicBoolean holdsThree = new AtomicBoolean(false);
        try (WeightStore w = WeightStore.open(p);
             DeviceExperts shard = new DeviceExperts(c, w, OpenClTestSupport.ops().resident(),
                     (l, e) -> l == 1 && (e == 1 || (e == 3 && holdsThree.get())))) {
            assertTrue(shard.placed(1, 1));
            assertFalse(shard.placed(1, 3));
            float[] x = new float[2 * h];
            java.util.Arrays.fill(x, 0.5f);
            int[] ids = {1, 3, 3, -1};
            float[] wts = {0.5f, 0.5f, 1f, 0f};
            float[] out = new float[2 * h];
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> shard.run(1, x, 2, K, ids, wts, out));
            assertTrue(e.getMessage().contains("expert 3 of layer 1 is not hosted"), e.getMessage());
            holdsThree.set(true); // loaded: placed on first use
            shard.run(1, x, 2, K, ids, wts, out);
            assertTrue(shard.placed(1, 3));
            float[] want = new float[2 * h];
            new LocalExperts(c, w, new ReferenceOps(), (l, ex) -> l == 1).run(1, x, 2, K, new int[]{1, 3, 3, 1}, wts, want);
            OpenClTestSupport.assertClose("after expert 3 came", want, out, want.length);
            holdsThree.set(false); // unloaded: released at the next call of its layer
            shard.run(1, x, 1, K, new int[]{1, -1}, new float[]{1f, 0f}, new float[h]);
            assertFalse(shard.placed(1, 3));
            assertEquals(true, shard.placed(1, 1));
        }
    }
}
