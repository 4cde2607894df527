package io.lightmesh.mesh;

import io.lightmesh.proto.v1.SamplingParams;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Chooses a token from logits: greedy at temperature 0, otherwise temperature, top-k, top-p and a draw. The draw
 * for the i-th generated token uses a generator seeded by (seed, i) alone, so a token is the same whichever worker
 * draws it (prefill draws the first, decode the rest, a resume any) and resumes reproduce the original run.
 */
public final class TokenPicker {
    private TokenPicker() {}

    public static int pick(float[] logits, SamplingParams p, long seed, int index) {
        float temperature = p.hasTemperature() ? p.getTemperature() : 1f;
        if (temperature <= 0f) return argmax(logits);
        int V = logits.length;
        Integer[] order = new Integer[V];
        for (int i = 0; i < V; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> Float.compare(logits[b], logits[a]));
        int keep = p.getTopK() > 0 ? Math.min(p.getTopK(), V) : V;
        double max = logits[order[0]];
        double[] prob = new double[keep];
        double sum = 0;
        for (int i = 0; i < keep; i++) sum += prob[i] = Math.exp((logits[order[i]] - max) / temperature);
        if (p.hasTopP() && p.getTopP() < 1f) {
            double acc = 0;
            int cut = keep;
            for (int i = 0; i < keep; i++) {
                acc += prob[i] / sum;
                if (acc >= p.getTopP()) { cut = i + 1; break; }
            }
            keep = cut;
            sum = 0;
            for (int i = 0; i < keep; i++) sum += prob[i];
        }
        double r = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + index).nextDouble() * sum;
        for (int i = 0; i < keep; i++) {
            r -= prob[i];
            if (r <= 0) return order[i];
        }
        return order[keep - 1];
    }

    /** Index of the largest logit; ties go to the lowest id. */
    public static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
