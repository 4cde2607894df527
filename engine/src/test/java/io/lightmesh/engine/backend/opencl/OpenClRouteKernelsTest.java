package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.DeviceOps.Buffer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * prefill_route.cl ({@link RouteKernels}): the router's ids and weights equal {@code route}'s, and the grouping's table
 * (tiles padded with empty ones, token rows, pair indices) equals the host's ({@link GroupedTiles} over the stable
 * grouping), on loads that cross the kernels' edges: an expert with no rows, every row on one expert (past one 128-row
 * tile), rows not a multiple of the 64-row block, a single row, top-1 and top-4; and the zeroing kernel.
 */
class OpenClRouteKernelsTest {
    private static ResidentOps r() {
        ResidentOps r = OpenClTestSupport.ops().resident();
        Assumptions.assumeTrue(r != null, "resident path off (-Dlightmesh.opencl.resident=false)");
        return r;
    }

    /** {name, rows, E, k} and logits [rows, E] that make the load named. */
    private record Load(String name, int rows, int E, int k, float[] logits) {}

    private static Load[] loads(Random rnd) {
        return new Load[]{
                load("random 300 rows top-2", 300, 8, 2, rnd, (t, e) -> 0f),
                load("expert 0 gets none", 200, 8, 2, rnd, (t, e) -> e == 0 ? -40f : 0f),
                load("all rows on expert 5, top-1", 333, 8, 1, rnd, (t, e) -> e == 5 ? 20f : 0f),
                load("all rows on experts 2 and 6", 257, 8, 2, rnd, (t, e) -> e == 2 || e == 6 ? 20f : 0f),
                load("one row", 1, 8, 2, rnd, (t, e) -> 0f),
                load("three blocks exactly, 16 experts top-4", 192, 16, 4, rnd, (t, e) -> 0f),
                load("64 experts, first half of rows on expert 63", 130, 64, 2, rnd, (t, e) -> e == 63 && t < 65 ? 30f : 0f)};
    }

    private interface Bias { float at(int row, int expert); }

    private static Load load(String name, int rows, int E, int k, Random rnd, Bias bias) {
        float[] lg = new float[rows * E];
        for (int t = 0; t < rows; t++) for (int e = 0; e < E; e++) lg[t * E + e] = rnd.nextFloat() * 4 - 2 + bias.at(t, e);
        return new Load(name, rows, E, k, lg);
    }

    @Test
    void routeAndGroupEqualRouteAndTheHostTable() {
        ResidentOps d = r();
        assertNull(d.routeWhyNot(), "prefill_route.cl built and passed its check");
        for (Load ld : loads(new Random(61))) {
            int rows = ld.rows(), E = ld.E(), k = ld.k(), pk = rows * k;
            assertTrue(d.routesOnDevice(E, k), ld.name());
            RouteKernels.Layout t = new RouteKernels.Layout(rows, k, E);
            assertEquals(t.length(), d.routeTableLength(rows, E, k));
            int[] ids = new int[pk], refIds = new int[pk], table = new int[t.countOffset()];
            float[] w = new float[pk], refW = new float[pk];
            try (Buffer lg = d.upload(ld.logits()); Buffer bi = d.ints(pk); Buffer bw = d.floats(pk);
                 Buffer ri = d.ints(pk); Buffer rw = d.floats(pk); Buffer tb = d.ints(t.length())) {
                d.write(tb, new int[(int) t.length()], (int) t.length()); // zeros: a stale table's padding is rewritten
                d.route(lg, rows, E, k, ri, rw);
                long before = d.launches();
                d.routeAndGroup(lg, rows, E, k, bi, bw, tb);
                assertEquals(3, d.launches() - before, ld.name() + ": route+count, table, scatter");
                d.read(bi, ids, pk);
                d.read(ri, refIds, pk);
                d.read(bw, 0, w, 0, pk);
                d.read(rw, 0, refW, 0, pk);
                d.read(tb, table, table.length);
            }
            assertArrayEquals(refIds, ids, ld.name() + ": ids as route's");
            for (int i = 0; i < pk; i++) assertEquals(refW[i], w[i], 1e-6f, ld.name() + ": weight " + i);
            assertArrayEquals(RouteKernels.hostTable(refIds, rows, k, E), table, ld.name() + ": the host's table");
        }
    }

    @Test
    void hostTableCutsTilesAndPads() {
        // 3 rows top-1 on expert 1, 130 rows on expert 0: tiles (0, 0, 128), (0, 128, 2), (1, 130, 3), then empty ones
        int[] ids = new int[133];
        Arrays.fill(ids, 0, 130, 0);
        Arrays.fill(ids, 130, 133, 1);
        int[] t = RouteKernels.hostTable(ids, 133, 1, 2);
        RouteKernels.Layout l = new RouteKernels.Layout(133, 1, 2);
        assertEquals(2 + 2, l.maxTiles());
        assertArrayEquals(new int[]{0, 0, 128, 0, 128, 2, 1, 130, 3, 0, 0, 0}, Arrays.copyOf(t, 12));
        assertEquals(132, t[l.tokenOffset() + 132]);
        assertEquals(130, t[l.pairOffset() + 130]);
    }

    @Test
    void zeroClearsARange() {
        ResidentOps d = r();
        float[] ones = new float[1000];
        Arrays.fill(ones, 1f);
        float[] got = new float[1000];
        try (Buffer b = d.upload(ones)) {
            d.zero(b, 100, 700);
            d.read(b, 0, got, 0, got.length);
        }
        for (int i = 0; i < got.length; i++) assertEquals(i >= 100 && i < 800 ? 0f : 1f, got[i], "element " + i);
    }

    @Test
    void writeAsyncLandsAndSyncsAreCounted() {
        ResidentOps d = r();
        int[] src = {5, 4, 3, 2, 1}, got = new int[5];
        try (Buffer b = d.ints(5)) {
            long before = d.hostSyncs();
            d.writeAsync(b, src, 5);
            src[0] = 99; // copied at the call
            assertEquals(before, d.hostSyncs(), "a non-blocking write is no sync");
            d.read(b, got, 5);
            assertEquals(before + 1, d.hostSyncs(), "a blocking read is one");
        }
        assertArrayEquals(new int[]{5, 4, 3, 2, 1}, got);
    }
}
