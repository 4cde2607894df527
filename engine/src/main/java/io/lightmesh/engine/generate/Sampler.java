package io.lightmesh.engine.generate;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token from logits: penalties first (when any), then greedy, or temperature + top-k + top-p with a
 * seeded generator.
 */
public final class Sampler {
    private final SamplingParams params;
    private final SplittableRandom random;

    public Sampler(SamplingParams params) {
        this.params = params;
        this.random = new SplittableRandom(params.seed());
    }

    /** Samples from {@code logits} as they are (no penalties). */
    public int sample(float[] logits) {
        return sample(logits, null);
    }

    /**
     * Samples after applying the penalties to a copy of {@code logits} (left unchanged) given {@code history}
     * (null: none seen yet).
     */
    public int sample(float[] logits, TokenHistory history) {
        if (history != null && params.penalties().active()) logits = params.penalties().apply(logits, history);
        return draw(logits);
    }

    private int draw(float[] logits) {
        if (params.isGreedy()) return argmax(logits);
        int V = logits.length;
        double[] p = new double[V];
        double sum = weights(logits, params.temperature(), p);
        int keep = V;
        if (params.topK() > 0 && params.topK() < V) keep = params.topK();
        if (keep == V && params.topP() >= 1f) { // plain temperature: the whole vocabulary in id order
            double r = random.nextDouble() * sum;
            for (int i = 0; i < V; i++) if ((r -= p[i]) < 0) return i;
            return argmax(logits);
        }
        // top-k and / or top-p: the most probable tokens best first (ties to the lower id). With top-k, the k best,
        // whose mass is what top-p takes its share of; without, the vocabulary's mass (sum), and only as many of the
        // best as the top-p prefix needs (TopCandidates ranks no more; every token where its margin falls short).
        boolean topP = params.topP() < 1f;
        int[] order = TopCandidates.ranked(p, keep < V ? keep : 0, keep == V ? params.topP() * sum : 0);
        int cut = -1;
        for (int pass = 0; cut < 0; pass++) {
            int n = Math.min(keep, order.length);
            double kept = 0;
            if (keep < V) for (int i = 0; i < keep; i++) kept += p[order[i]];
            else kept = sum;
            if (!topP) cut = n;
            else { // smallest prefix whose mass reaches top_p of what top-k kept
                double acc = 0;
                for (int i = 0; i < n && cut < 0; i++) if ((acc += p[order[i]]) >= params.topP() * kept) cut = i + 1;
                if (cut < 0 && (n == keep || pass > 0)) cut = n; // top-p over all that top-k kept
                else if (cut < 0) order = TopCandidates.ranked(p, V, 0);
            }
        }
        double s = 0;
        for (int i = 0; i < cut; i++) s += p[order[i]];
        double r = random.nextDouble() * s;
        for (int i = 0; i < cut; i++) if ((r -= p[order[i]]) < 0) return order[i];
        return order[0];
    }

    /**
     * The temperature, then softmax's weights in fp64 for a stable cumulative sum: {@code p[i] = exp(l_i / T - max)}
     * (unnormalised, the largest 1); returns their sum in id order.
     */
    private static double weights(float[] logits, float temperature, double[] p) {
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) max = Math.max(max, l / temperature);
        double sum = 0;
        for (int i = 0; i < logits.length; i++) sum += p[i] = Math.exp(logits[i] / temperature - max);
        return sum;
    }

    /**
     * The plain form of a draw, kept to check the fast one against (SamplerFastPathTest) and to time it beside it
     * (SamplerBench): the whole vocabulary sorted as boxed ids for top-k and top-p (50-70 ms a token at V = 200,064).
     * The same token as {@link #sample} from a generator in the same state; it advances {@code random} by one draw.
     */
    public static int plain(float[] logits, SamplingParams params, SplittableRandom random) {
        int V = logits.length;
        double[] p = new double[V];
        double sum = weights(logits, params.temperature(), p);
        Integer[] order = null;
        int keep = V;
        if (params.topK() > 0 && params.topK() < V) keep = params.topK();
        if (keep < V || params.topP() < 1f) {
            order = new Integer[V];
            for (int i = 0; i < V; i++) order[i] = i;
            final double[] pp = p;
            Arrays.sort(order, (a, b) -> pp[b] != pp[a] ? Double.compare(pp[b], pp[a]) : Integer.compare(a, b));
            double kept = 0;
            if (keep < V) for (int i = 0; i < keep; i++) kept += p[order[i]];
            else kept = sum;
            if (params.topP() < 1f) {
                double acc = 0;
                for (int i = 0; i < keep; i++) {
                    acc += p[order[i]];
                    if (acc >= params.topP() * kept) { keep = i + 1; break; }
                }
            }
            sum = 0;
            for (int i = 0; i < keep; i++) sum += p[order[i]];
        }
        double r = random.nextDouble() * sum;
        if (order == null) {
            for (int i = 0; i < V; i++) if ((r -= p[i]) < 0) return i;
            return argmax(logits);
        }
        for (int i = 0; i < keep; i++) if ((r -= p[order[i]]) < 0) return order[i];
        return order[0];
    }

    /**
     * Advances the generator exactly as one {@link #sample} call does, without logits: for a token another sampler
     * in the same state drew (one draw per sampled token, none when greedy).
     */
    public void skip() {
        if (!params.isGreedy()) random.nextDouble();
    }

    /** Index of the largest logit; ties go to the lowest id, as torch.argmax does. */
    public static int argmax(float[] logits) { return argmax(logits, 0, logits.length); }

    /** {@link #argmax(float[])} of {@code logits[off, off + n)}, as an index into that row. */
    public static int argmax(float[] logits, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) if (logits[off + i] > logits[off + best]) best = i;
        return best;
    }
}
