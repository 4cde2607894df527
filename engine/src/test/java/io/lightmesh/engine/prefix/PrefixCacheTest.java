package io.lightmesh.engine.prefix;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.config.ConfigLoader;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateSnapshots;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The radix tree on its own, with made-up states whose contents say where they come from: KV row t of layer l holds
 * (token t, l, t), a snapshot at length p holds p in every lightning element. Checks longest-prefix lookup, edges
 * split and shared, LRU eviction under the budget, and the byte count against a recount of the tree.
 */
class PrefixCacheTest {
    @TempDir static Path dir;
    static ModelConfig config;

    @BeforeAll
    static void shape() throws Exception {
        SyntheticCheckpoint.write(dir, SyntheticCheckpoint.Shape.tiny(), DType.F32, 1, false);
        config = ConfigLoader.load(dir.resolve("config.json"));
    }

    /** A state after {@code tokens}, KV rows encoding (token, layer, position). */
    static SequenceState state(int[] tokens) {
        return StateSnapshots.restore(config, tokens.length, lightningAt(tokens.length, 0), (layer, cache) -> {
            int w = cache.rowWidth();
            float[] k = new float[tokens.length * w], v = new float[tokens.length * w];
            for (int t = 0; t < tokens.length; t++) {
                for (int j = 0; j < w; j++) {
                    k[t * w + j] = tokens[t] * 1000f + layer * 10 + j % 7 + t * 1e-3f;
                    v[t * w + j] = -k[t * w + j];
                }
            }
            cache.append(k, v, tokens.length);
        }, 0);
    }

    static float[][] lightningAt(int p, float salt) {
        float[][] out = new float[config.numLayers()][];
        for (int l = 0; l < out.length; l++) {
            if (config.isSoftmax(l)) continue;
            out[l] = new float[config.numHeads() * config.headDim() * config.headDim()];
            Arrays.fill(out[l], p + salt);
        }
        return out;
    }

    static TreeMap<Integer, float[][]> snapshots(int... at) {
        TreeMap<Integer, float[][]> m = new TreeMap<>();
        for (int p : at) m.put(p, lightningAt(p, 0));
        return m;
    }

    /** Asserts the restored state is the state of tokens[0..p) as {@link #state} makes it, with the snapshot of p. */
    static void assertRestores(PrefixCache.Hit hit, int[] tokens, int p) {
        assertNotNull(hit, "a hit of " + p);
        assertEquals(p, hit.tokens());
        SequenceState got = hit.restore(8), want = state(Arrays.copyOf(tokens, p));
        assertEquals(p, got.position());
        float[][] gl = StateSnapshots.lightning(got), wl = StateSnapshots.lightning(want);
        for (int l = 0; l < config.numLayers(); l++) {
            if (config.isSoftmax(l)) {
                float[][] g = StateSnapshots.kvRows(got, l, 0, p), w = StateSnapshots.kvRows(want, l, 0, p);
                assertArrayEquals(w[0], g[0], "keys of layer " + l);
                assertArrayEquals(w[1], g[1], "values of layer " + l);
            } else {
                assertArrayEquals(wl[l], gl[l], "lightning of layer " + l);
            }
        }
    }

    static int[] tokens(int seed, int n) { return new SplittableRandom(seed).ints(n, 0, 512).toArray(); }

    static int[] concat(int[] a, int[] b) {
        int[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    @Test
    void findsTheLongestSnapshotOfThePrefix() {
        PrefixCache cache = new PrefixCache(config, 1L << 30);
        int[] a = tokens(1, 40);
        assertTrue(cache.store(a, state(a), snapshots(16, 32, 40)));
        assertRestores(cache.lookup(concat(a, tokens(2, 5)), Integer.MAX_VALUE), a, 40);
        assertRestores(cache.lookup(a, a.length - 1), a, 32);  // the last token is never taken from the cache
        int[] diverges = concat(Arrays.copyOf(a, 35), tokens(3, 10));
        assertRestores(cache.lookup(diverges, diverges.length), a, 32);
        int[] early = concat(Arrays.copyOf(a, 20), tokens(4, 30));
        assertRestores(cache.lookup(early, early.length), a, 16);
        assertNull(cache.lookup(concat(Arrays.copyOf(a, 15), tokens(5, 30)), 45));
        assertNull(cache.lookup(tokens(6, 50), 50));
        PrefixCache.Stats s = cache.stats();
        assertEquals(6, s.lookups());
        assertEquals(4, s.hits());
        assertEquals(40 + 32 + 32 + 16, s.cachedTokens());
        assertEquals(3, s.snapshots());
    }

    @Test
    void sharedPrefixesAreStoredOnceAndCountedHonestly() {
        PrefixCache cache = new PrefixCache(config, 1L << 30);
        long tok = cache.tokenBytes(), snap = cache.snapshotBytes(), node = PrefixCache.NODE_OVERHEAD;
        assertEquals(2L * 4 * 2 * 16 + 4, tok, "tiny: one softmax layer, 2 KV heads of 16, fp32 K and V, and the token id");
        int[] a = tokens(1, 40);
        cache.store(a, state(a), snapshots(16, 32, 40));
        assertEquals(40 * tok + 3 * node + 3 * snap, cache.bytes());
        assertEquals(cache.recount(), cache.bytes());

        PrefixCache.Hit before = cache.lookup(a, 40); // taken before the edge it reads is split
        int[] b = concat(Arrays.copyOf(a, 20), tokens(7, 10)); // branches off inside the edge 16..32
        cache.store(b, state(b), snapshots(30));
        assertEquals(50 * tok + 5 * node + 4 * snap, cache.bytes(), "only b's 10 new tokens were added, and one node for the split");
        assertEquals(cache.recount(), cache.bytes());
        assertRestores(before, a, 40);
        assertRestores(cache.lookup(b, 30), b, 30);
        assertRestores(cache.lookup(a, 40), a, 40);

        cache.store(b, state(b), snapshots(30)); // again: nothing new
        assertEquals(50 * tok + 5 * node + 4 * snap, cache.bytes());
        cache.store(a, state(a), snapshots(20)); // a snapshot at the split node: no new rows
        assertEquals(50 * tok + 5 * node + 5 * snap, cache.bytes());
        assertRestores(cache.lookup(concat(Arrays.copyOf(a, 25), tokens(8, 3)), 28), a, 20);
        assertEquals(cache.recount(), cache.bytes());
    }

    @Test
    void evictsTheLeastRecentlyUsedUnderTheBudget() {
        int[] a = tokens(11, 30), b = tokens(12, 30), c = tokens(13, 30);
        PrefixCache probe = new PrefixCache(config, 1L << 30);
        probe.store(a, state(a), snapshots(30));
        long one = probe.bytes();
        PrefixCache cache = new PrefixCache(config, 2 * one + one / 2); // room for two such prompts
        cache.store(a, state(a), snapshots(30));
        cache.store(b, state(b), snapshots(30));
        assertNotNull(cache.lookup(a, 30)); // a used after b: b is now the eldest
        cache.store(c, state(c), snapshots(30));
        assertTrue(cache.bytes() <= cache.stats().budget());
        assertEquals(cache.recount(), cache.bytes());
        assertNull(cache.lookup(b, 30), "b, least recently used, was evicted with its edge");
        assertRestores(cache.lookup(a, 30), a, 30);
        assertRestores(cache.lookup(c, 30), c, 30);
        assertEquals(1, cache.stats().evictions());
        assertEquals(2 * one, cache.bytes());
    }

    @Test
    void evictingAnInnerSnapshotKeepsTheRowsBelowIt() {
        int[] a = tokens(21, 40);
        PrefixCache probe = new PrefixCache(config, 1L << 30);
        probe.store(a, state(a), snapshots(16, 40));
        long both = probe.bytes();
        // a budget a little short of both: the store drops the eldest, the inner one (a store marks the longest last)
        PrefixCache cache = new PrefixCache(config, both - 1);
        cache.store(a, state(a), snapshots(16, 40));
        assertEquals(1, cache.stats().snapshots());
        assertEquals(both - cache.snapshotBytes(), cache.bytes(), "the inner edge's rows stay: the snapshot below needs them");
        assertEquals(cache.recount(), cache.bytes());
        assertRestores(cache.lookup(a, 40), a, 40);
        assertNull(cache.lookup(concat(Arrays.copyOf(a, 20), tokens(22, 5)), 25));
    }

    @Test
    void aStoreLargerThanTheBudgetIsSkipped() {
        int[] a = tokens(31, 40);
        PrefixCache cache = new PrefixCache(config, 1000);
        assertFalse(cache.store(a, state(a), snapshots(40)));
        assertEquals(0, cache.bytes());
        assertEquals(1, cache.stats().skipped());
        assertNull(cache.lookup(a, 40));
        PrefixCache off = new PrefixCache(config, 0);
        assertFalse(off.store(a, state(a), snapshots(40)));
    }

    @Test
    void manyPromptsKeepTheCountExactAndUnderBudget() {
        PrefixCache cache = new PrefixCache(config, 200_000);
        SplittableRandom rnd = new SplittableRandom(9);
        int[] shared = tokens(40, 24);
        for (int i = 0; i < 60; i++) {
            int[] p = concat(Arrays.copyOf(shared, rnd.nextInt(0, 25)), tokens(100 + i, rnd.nextInt(1, 40)));
            int end = p.length;
            TreeMap<Integer, float[][]> at = snapshots(end);
            if (end > 16) at.put(16, lightningAt(16, 0));
            cache.store(p, state(p), at);
            assertTrue(cache.bytes() <= 200_000);
            assertEquals(cache.recount(), cache.bytes(), "after store " + i);
            PrefixCache.Hit h = cache.lookup(p, end);
            if (h != null) assertRestores(h, p, h.tokens());
        }
        assertTrue(cache.stats().evictions() > 0, "the budget was reached");
    }
}
