package io.lightmesh.engine.generate;

import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@link Sampler}'s top-k / top-p path ({@link TopCandidates}: only the best tokens ranked, with a bounded heap) against
 * the plain one it replaced (the whole vocabulary sorted as boxed ids): the same token from the same seed on every
 * draw, over flat and peaked distributions, ties, tiny and large temperatures, top-k from 1 past the vocabulary and
 * top-p from 0.05 to 1. One difference is by design: with top-p and no top-k the mass top-p takes its share of is
 * the vocabulary's sum in id order (the plain path summed it in probability order, equal but for rounding), and
 * {@link Sampler#plain} does the same.
 */
class SamplerFastPathTest {
    @Test
    void sameTokensAsThePlainSampler() {
        Random rnd = new Random(9);
        int cases = 0;
        for (int V : new int[]{1, 2, 7, 100, 3000}) { // 3000: the top-p search grows 64 -> 512 -> 4096 (all)
            for (String shape : List.of("gaussian", "peaked", "flat", "quantized", "two-level")) {
                float[] l = new float[V];
                for (int i = 0; i < V; i++) {
                    l[i] = switch (shape) {
                        case "gaussian" -> (float) (rnd.nextGaussian() * 2);
                        case "peaked" -> (float) (rnd.nextGaussian() * 8);
                        case "flat" -> 1.5f;
                        case "quantized" -> rnd.nextInt(5) * 0.5f; // many exact ties
                        default -> i % 97 == 3 ? 4f : -1f;
                    };
                }
                for (float t : new float[]{0.05f, 0.7f, 1f, 2.5f}) {
                    for (int k : new int[]{0, 1, 5, 50, V - 1, V, V + 5}) {
                        if (k < 0) continue;
                        for (float topP : new float[]{0.05f, 0.5f, 0.9f, 0.95f, 0.999f, 1f}) {
                            SamplingParams params = new SamplingParams(t, k, topP, 1000L + cases, 10, List.of(), 0);
                            Sampler fast = new Sampler(params);
                            SplittableRandom plainRandom = new SplittableRandom(params.seed());
                            int draws = V >= 3000 ? 4 : 12;
                            int[] want = new int[draws], got = new int[draws];
                            for (int d = 0; d < draws; d++) {
                                want[d] = Sampler.plain(l, params, plainRandom);
                                got[d] = fast.sample(l);
                            }
                            assertArrayEquals(want, got, "V=" + V + " " + shape + " T=" + t + " top_k=" + k + " top_p=" + topP);
                            cases++;
                        }
                    }
                }
            }
        }
        assertEquals(5 * 5 * 4 * 7 * 6, cases);
    }

    @Test
    void topCandidatesRankByProbabilityThenId() {
        // NaN first (Double.compare), equal probabilities by id, values whose doubles share their high 32 bits (the
        // sort key) and differ below, tiny and zero probabilities last
        double a = 0.3, b = Math.nextUp(0.3), tiny = 1e-300;
        double[] p = {0.1, 0.5, 0.5, Double.NaN, 0.0, 0.7, 0.1, a, b, tiny, a};
        int[] all = {3, 5, 1, 2, 8, 7, 10, 0, 6, 9, 4};
        assertArrayEquals(all, TopCandidates.ranked(p, p.length, 0));
        int[] three = TopCandidates.ranked(p, 3, 0); // whole buckets: at least the 3 best, in order
        assertArrayEquals(Arrays.copyOf(all, three.length), three);
        assertEquals(true, three.length >= 3);
        int[] half = TopCandidates.ranked(new double[]{0.5, 0.25, 0.125, 0.0625, 1e-9}, 0, 0.7); // 0.5 + 0.25 reach it
        assertArrayEquals(new int[]{0, 1, 2}, half); // the bucket past the one that reaches the mass comes too
        assertArrayEquals(new int[]{0, 1, 2, 3, 4}, TopCandidates.ranked(new double[]{0.5, 0.25, 0.125, 0.0625, 1e-9}, 0, 5.0));
    }
}
