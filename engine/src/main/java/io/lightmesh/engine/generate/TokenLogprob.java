package io.lightmesh.engine.generate;

/**
 * A token's log-probability and the most likely tokens at its position, from the RAW logits: log-softmax of the
 * model's output before penalties, temperature, top-k and top-p (vLLM's default, "raw_logprobs"), so they do not
 * depend on how the token was sampled and equal {@code ./lightmesh score}'s logits after a log-softmax.
 *
 * @param token       the token chosen (sampled, forced, or given by the prompt)
 * @param logprob     its log-probability
 * @param topTokens   the most likely tokens, most likely first (ties: lower id first); may include {@code token}
 * @param topLogprobs their log-probabilities, in the same order
 */
public record TokenLogprob(int token, float logprob, int[] topTokens, float[] topLogprobs) {
    /** Most alternatives a request may ask for (OpenAI's top_logprobs limit). */
    public static final int MAX_TOP = 20;

    /**
     * {@code token}'s log-probability under {@code logits}, with the {@code top} most likely tokens (0..20).
     * Computed in double precision: logprob = logit - (max + log sum exp(logit - max)).
     */
    public static TokenLogprob of(float[] logits, int token, int top) {
        if (top < 0 || top > MAX_TOP) throw new IllegalArgumentException("top log-probabilities must be in 0.." + MAX_TOP + ", got " + top);
        if (token < 0 || token >= logits.length) throw new IllegalArgumentException("token " + token + " outside 0.." + (logits.length - 1));
        double logZ = logSumExp(logits);
        int k = Math.min(top, logits.length);
        int[] ids = new int[k];
        int filled = 0;
        for (int i = 0; i < logits.length; i++) { // insertion into the k best so far, kept in order
            if (k == 0) break;
            if (filled == k && !(logits[i] > logits[ids[k - 1]])) continue;
            int at = filled < k ? filled++ : k - 1;
            while (at > 0 && logits[i] > logits[ids[at - 1]]) { ids[at] = ids[at - 1]; at--; }
            ids[at] = i;
        }
        float[] lps = new float[k];
        for (int j = 0; j < k; j++) lps[j] = (float) (logits[ids[j]] - logZ);
        return new TokenLogprob(token, (float) (logits[token] - logZ), ids, lps);
    }

    /** log sum_i exp(logits[i]), stable. */
    public static double logSumExp(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) max = Math.max(max, l);
        double sum = 0;
        for (float l : logits) sum += Math.exp(l - max);
        return max + Math.log(sum);
    }
}
