package io.lightmesh.engine.generate;

import java.util.Arrays;
import java.util.Comparator;

/**
 * The most probable tokens of a distribution, best first: by probability, ties to the lower id (the order
 * {@link Sampler} keeps for top-k and top-p: {@code Double.compare} on the probabilities, so a NaN ranks above every
 * number, as under a full sort). Only the tokens that can matter are ranked: one pass files every probability under its
 * binary exponent (count and mass a bucket), the best buckets that hold the wanted count or mass are taken whole, and
 * those tokens alone are sorted, as packed primitive keys. Sorting the whole vocabulary of boxed ids took 50-70 ms a
 * token at V = 200,064 (MiniMax-M1's vocabulary), on every top-k or top-p draw.
 */
final class TopCandidates {
    private TopCandidates() {}

    /** Exponent buckets: p in (0, 1] has a binary exponent in [-1074, 0]; bucket 0 also takes NaN. */
    private static final int BUCKETS = 1076;

    private static int bucket(double p) {
        int e = Math.getExponent(p); // NaN, infinities: 1024; zero and subnormals: -1023
        return e > 0 ? 0 : Math.min(BUCKETS - 1, -e);
    }

    /**
     * Token ids best first: at least the {@code count} best (all of them if fewer) and at least as many of the best as
     * hold {@code mass} (0: no mass asked for), as the whole exponent buckets that cover both; every token when they
     * do not (a mass past the sum's rounding).
     */
    static int[] ranked(double[] p, int count, double mass) {
        int V = p.length;
        int[] n = new int[BUCKETS];
        double[] m = new double[BUCKETS];
        for (double x : p) {
            int b = bucket(x);
            n[b]++;
            m[b] += x;
        }
        int last = BUCKETS - 1, have = 0;
        double held = 0;
        for (int b = 0; b < BUCKETS; b++) {
            have += n[b];
            held += m[b];
            // a bucket's mass summed in another order than the caller's prefix: a margin, then the next bucket too
            if (have >= Math.min(count, V) && (mass <= 0 || held >= mass * (1 + 1e-9))) {
                last = Math.min(BUCKETS - 1, b + (mass > 0 ? 1 : 0));
                break;
            }
        }
        int c = 0;
        for (int b = 0; b <= last; b++) c += n[b];
        long[] keys = new long[c];
        int k = 0;
        for (int i = 0; i < V; i++) {
            if (bucket(p[i]) > last) continue;
            // p descending by the high 32 bits of its double (p >= 0: sign 0, the whole exponent, 20 bits of mantissa;
            // NaN above +inf above every number), then the id
            long rank = 0x7fffffffL - (Double.doubleToRawLongBits(p[i]) >>> 32);
            keys[k++] = rank << 32 | i;
        }
        Arrays.sort(keys);
        int[] ids = new int[c];
        for (int i = 0; i < c; i++) ids[i] = (int) keys[i];
        // equal high bits, unequal p (the low 32 bits of the mantissa differ): such a run sorted again on p itself
        for (int s = 0, e; s < c; s = e) {
            e = s + 1;
            boolean mixed = false;
            while (e < c && (int) (keys[e] >>> 32) == (int) (keys[s] >>> 32)) mixed |= p[ids[e++]] != p[ids[s]];
            if (mixed) resort(p, ids, s, e);
        }
        return ids;
    }

    private static void resort(double[] p, int[] ids, int from, int to) {
        Integer[] run = new Integer[to - from];
        for (int i = from; i < to; i++) run[i - from] = ids[i];
        Arrays.sort(run, Comparator.<Integer>comparingDouble(i -> -p[i]).thenComparingInt(i -> i));
        for (int i = from; i < to; i++) ids[i] = run[i - from];
    }
}
