package io.lightmesh.mesh;

/**
 * How the slots of a replicated expert in one expert call are divided over its replicas: evenly unless a replica
 * is measurably slower than the others, then in proportion to each replica's speed.
 *
 * <p>Why even by default: a split by measured load (slots in flight times round trip per slot) feeds on itself, a
 * replica given fewer rows looks slower per row (fixed costs over fewer rows, queueing behind other callers) and
 * gets fewer still; it sent 60% of the rows to one of four replicas while the plan was even. An even split is what
 * the planner assumed when it made the replicas. A replica's weight leaves 1 only when its round trip per slot over
 * a window exceeds {@value #SLOW} times the others' (median), then moves toward the inverse of that ratio by
 * {@value #DAMPING} of the gap per update (never below {@value #MIN_WEIGHT}); it goes back to 1 once the ratio is
 * under {@value #RECOVERED}. Pure functions: the same inputs give the same split.
 */
public final class ReplicaSplit {
    /** A replica this many times slower per slot than the others' median is given fewer rows. */
    public static final double SLOW = 1.5;
    /** A weighted-down replica back within this ratio of the others is given its even share again. */
    public static final double RECOVERED = 1.2;
    /** Fraction of the gap to the target weight closed per update. */
    public static final double DAMPING = 0.5;
    /** The least weight: a slow replica still gets some rows (and so keeps being measured). */
    public static final double MIN_WEIGHT = 0.1;

    private ReplicaSplit() {}

    /**
     * {@code count} slots divided over replicas in proportion to {@code weights} (largest remainder); the slots
     * left over after the whole shares go to the largest fractional parts, ties (with equal weights: every
     * replica) taken in order from index {@code rotation} (callers advance it per call so remainders go round).
     * Answers the number of slots per replica, summing to {@code count}.
     */
    public static int[] quotas(int count, double[] weights, int rotation) {
        int r = weights.length;
        if (r == 0) throw new IllegalArgumentException("no replica");
        if (count < 0) throw new IllegalArgumentException("negative count " + count);
        double sum = 0;
        for (double w : weights) {
            if (!(w > 0) || Double.isInfinite(w)) throw new IllegalArgumentException("weight must be positive and finite: " + w);
            sum += w;
        }
        int[] q = new int[r];
        double[] frac = new double[r];
        int given = 0;
        for (int i = 0; i < r; i++) {
            double exact = count * weights[i] / sum;
            q[i] = (int) Math.floor(exact);
            frac[i] = exact - q[i];
            given += q[i];
        }
        int start = Math.floorMod(rotation, r);
        for (int left = count - given; left > 0; left--) {
            int best = -1;
            for (int j = 0; j < r; j++) {
                int i = (start + j) % r;
                if (best < 0 || frac[i] > frac[best] + 1e-12) best = i;
            }
            q[best]++;
            frac[best] = -1; // one extra slot each at most
        }
        return q;
    }

    /**
     * The next weight of a replica whose round trip per slot over the window is {@code mine}, the others' being
     * {@code others} (NaN where not measured). Unmeasured (NaN) or nothing to compare with: the weight is kept.
     */
    public static double nextWeight(double current, double mine, double[] others) {
        if (Double.isNaN(mine)) return current;
        double ref = median(others);
        if (Double.isNaN(ref) || ref <= 0) return current;
        double ratio = mine / ref;
        boolean slow = ratio > SLOW || current < 1 && ratio > RECOVERED;
        double target = slow ? Math.max(MIN_WEIGHT, 1 / ratio) : 1;
        double w = current + DAMPING * (target - current);
        return Math.abs(w - 1) < 0.02 ? 1 : Math.max(MIN_WEIGHT, Math.min(1, w));
    }

    /** Median of the finite values; NaN when there are none. */
    static double median(double[] v) {
        double[] f = java.util.Arrays.stream(v).filter(Double::isFinite).sorted().toArray();
        if (f.length == 0) return Double.NaN;
        return f.length % 2 == 1 ? f[f.length / 2] : (f[f.length / 2 - 1] + f[f.length / 2]) / 2;
    }
}
