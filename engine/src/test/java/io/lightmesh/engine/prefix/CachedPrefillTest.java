package io.lightmesh.engine.prefix;

import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.backend.VectorOps;
import io.lightmesh.engine.backend.opencl.OpenClTestSupport;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Supplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Prefill through the prefix cache against prefill without it, on a seeded random model (lightning block 16, one
 * softmax layer): the logits of the last prompt token and the greedy tokens decoded after it.
 *
 * <p>Tolerances: a resume from a snapshot at a block boundary within {@link #ALIGNED} relative (max |diff| / max
 * |logit|); from a snapshot at the end of a prompt (inside a block) within {@link #UNALIGNED}, the engine's bound for
 * prefill cut inside a block (ModelConsistencyTest). Greedy tokens equal in both cases.
 */
class CachedPrefillTest {
    static final double ALIGNED = 1e-5, UNALIGNED = 1e-4;
    static final int GREEDY = 12;

    @TempDir static Path dir;

    @BeforeAll
    static void write() throws Exception {
        SyntheticCheckpoint.write(dir, SyntheticCheckpoint.Shape.tiny(), DType.F32, 5, false);
    }

    static int[] tokens(int seed, int n) { return new SplittableRandom(seed).ints(n, 0, 512).toArray(); }

    static int[] concat(int[]... parts) {
        int n = 0;
        for (int[] p : parts) n += p.length;
        int[] out = new int[n];
        int at = 0;
        for (int[] p : parts) { System.arraycopy(p, 0, out, at, p.length); at += p.length; }
        return out;
    }

    /** Greedy tokens after a prefill's logits, decoding on the state. */
    static int[] greedy(MiniMaxModel m, SequenceState s, float[] logits, int n) {
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = argmax(logits);
            logits = m.decode(List.of(s), new int[]{out[i]})[0];
        }
        return out;
    }

    static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    static double relDiff(float[] want, float[] got) {
        double max = 0, diff = 0;
        for (int i = 0; i < want.length; i++) {
            max = Math.max(max, Math.abs(want[i]));
            diff = Math.max(diff, Math.abs(want[i] - got[i]));
        }
        return diff / max;
    }

    /** The uncached answer to {@code prompt}: last logits and greedy tokens. */
    record Answer(float[] logits, int[] greedy) {}

    static Answer plain(MiniMaxModel m, int[] prompt) {
        SequenceState s = m.newState();
        float[] logits = m.prefill(s, prompt);
        return new Answer(logits, greedy(m, s, logits, GREEDY));
    }

    static void assertSame(MiniMaxModel m, int[] prompt, CachedPrefill.Result r, double tol, String what) {
        Answer want = plain(m, prompt);
        double d = relDiff(want.logits(), r.logits());
        System.out.printf("%s: %d cached of %d, logits max rel diff %.3g%n", what, r.cachedTokens(), prompt.length, d);
        assertTrue(d <= tol, what + ": logits differ by " + d + " > " + tol);
        assertArrayEquals(want.greedy(), greedy(m, r.state(), r.logits(), GREEDY), what + ": greedy tokens");
        assertEquals(prompt.length, r.state().position() - GREEDY);
    }

    @Test
    void referenceBackend() throws Exception { check(ReferenceOps::new); }

    @Test
    void vectorBackend() throws Exception { check(VectorOps::new); }

    void check(Supplier<TensorOps> backend) throws Exception {
        try (MiniMaxModel m = MiniMaxModel.load(dir, backend.get())) {
            PrefixCache cache = new PrefixCache(m.config(), 1L << 30);
            CachedPrefill p = new CachedPrefill(m, cache, 32);
            int[] system = tokens(1, 70); // a shared prefix: blocks end at 16, 32, 48, 64
            int[] a = concat(system, tokens(2, 9));
            CachedPrefill.Result ra = p.prefill(a);
            assertEquals(0, ra.cachedTokens());
            assertSame(m, a, ra, ALIGNED, "cold (no cache hit: plain prefill cut at 32, 64 and 79)");

            int[] b = concat(system, tokens(3, 20)); // shares 70 tokens with a: the last block boundary below is 64
            CachedPrefill.Result rb = p.prefill(b);
            assertEquals(64, rb.cachedTokens());
            assertSame(m, b, rb, ALIGNED, "shared prefix, resumed at a block boundary");

            int[] a2 = concat(a, tokens(4, 6), tokens(5, 11)); // the next turn: a, an answer, a new message
            CachedPrefill.Result ra2 = p.prefill(a2);
            assertEquals(a.length, ra2.cachedTokens(), "the snapshot at the end of a's prompt");
            assertSame(m, a2, ra2, UNALIGNED, "next turn, resumed at the end of the last prompt");

            CachedPrefill.Result again = p.prefill(a); // the same prompt: all but the last token's block from the cache
            assertEquals(64, again.cachedTokens());
            assertSame(m, a, again, ALIGNED, "repeated prompt");

            int[] shortPrompt = tokens(6, 5), shortNext = concat(shortPrompt, tokens(7, 4));
            p.prefill(shortPrompt);
            CachedPrefill.Result rs = p.prefill(shortNext); // below one block: only the end-of-prompt snapshot can hit
            assertEquals(5, rs.cachedTokens());
            assertSame(m, shortNext, rs, UNALIGNED, "short prompt's next turn");
            assertEquals(cache.recount(), cache.bytes());
        }
    }

    @Test
    void batchedPrefillWithMixedHitsEqualsPlainPrefill() throws Exception {
        try (MiniMaxModel m = MiniMaxModel.load(dir, new ReferenceOps())) {
            PrefixCache cache = new PrefixCache(m.config(), 1L << 30);
            CachedPrefill p = new CachedPrefill(m, cache, 32);
            int[] system = tokens(11, 40);
            p.prefill(concat(system, tokens(12, 3)));
            List<int[]> prompts = List.of(concat(system, tokens(13, 30)), tokens(14, 50), concat(system, tokens(15, 2)), tokens(16, 3));
            List<CachedPrefill.Result> got = p.prefill(prompts, 32); // forward steps of 32 rows: prompts cut across steps
            assertEquals(List.of(32, 0, 32, 0), got.stream().map(CachedPrefill.Result::cachedTokens).toList());
            for (int i = 0; i < prompts.size(); i++) assertSame(m, prompts.get(i), got.get(i), ALIGNED, "batch member " + i);
        }
    }

    @Test
    void aBadContextFailsTheCallAndStoresNothing() throws Exception {
        try (MiniMaxModel m = MiniMaxModel.load(dir, new ReferenceOps())) {
            PrefixCache cache = new PrefixCache(m.config(), 1L << 30);
            CachedPrefill p = new CachedPrefill(m, cache);
            int[] good = tokens(21, 40), bad = concat(tokens(22, 30), new int[]{512});
            assertThrows(IllegalArgumentException.class, () -> p.prefill(List.of(good, bad), 2048));
            assertThrows(IllegalArgumentException.class, () -> p.prefill(new int[0]));
            assertEquals(0, cache.bytes());
            assertEquals(0, cache.stats().lookups());
        }
    }

    @Test
    void withoutACacheItIsThePlainPrefill() throws Exception {
        try (MiniMaxModel m = MiniMaxModel.load(dir, new ReferenceOps())) {
            int[] a = tokens(31, 45);
            CachedPrefill.Result r = new CachedPrefill(m, null).prefill(a);
            assertEquals(0, r.cachedTokens());
            assertSame(m, a, r, 0, "no cache");
        }
    }

    /**
     * The device path: snapshots taken from states that live on the device (read back without the KV), restored into
     * host states that the next device prefill uploads. Compared with the reference backend without a cache, at the
     * device tolerance (OpenClTestSupport.REL_TOL).
     */
    @Test
    void openClDevicePath() throws Exception {
        var cl = OpenClTestSupport.ops();
        try (MiniMaxModel ref = MiniMaxModel.load(dir, new ReferenceOps()); MiniMaxModel dev = MiniMaxModel.load(dir, cl)) {
            assertTrue(dev.prefillsOnDevice(), "prefill runs on the device");
            PrefixCache cache = new PrefixCache(dev.config(), 1L << 30);
            CachedPrefill p = new CachedPrefill(dev, cache, 32);
            int[] system = tokens(41, 50);
            int[] a = concat(system, tokens(42, 7)), b = concat(system, tokens(43, 12)), a2 = concat(a, tokens(44, 9));
            List<int[]> prompts = List.of(a, b, a2);
            List<Integer> cached = new ArrayList<>();
            for (int[] prompt : prompts) {
                CachedPrefill.Result r = p.prefill(prompt);
                cached.add(r.cachedTokens());
                Answer want = plain(ref, prompt);
                double d = relDiff(want.logits(), r.logits());
                System.out.printf("opencl: %d cached of %d, logits max rel diff vs reference %.3g%n", r.cachedTokens(), prompt.length, d);
                assertTrue(d <= OpenClTestSupport.REL_TOL, "device logits differ by " + d);
                assertArrayEquals(want.greedy(), greedy(dev, r.state(), r.logits(), GREEDY), "greedy tokens on the device");
                r.state().discardDevice();
            }
            assertEquals(List.of(0, 48, a.length), cached);
            assertTrue(cache.stats().snapshots() >= 5, "snapshots of the device states were stored");
        }
    }
}
