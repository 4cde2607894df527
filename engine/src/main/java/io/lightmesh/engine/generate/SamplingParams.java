package io.lightmesh.engine.generate;

import java.util.List;

/**
 * How one request is sampled and when it stops.
 *
 * @param temperature       0 means greedy (argmax); otherwise logits are divided by it
 * @param topK              keep the k most likely tokens (0: all)
 * @param topP              nucleus: keep the smallest set whose probability reaches p (1: all)
 * @param seed              makes sampling reproducible: the same seed, prompt and params give the same tokens
 * @param maxNewTokens      hard limit on generated tokens (finish reason "length")
 * @param stop              strings that end generation; the text is cut before the first one found
 * @param maxThinkingTokens after this many tokens inside {@code <think>}, {@code </think>} is forced and the answer
 *                          continues (0: no budget). M1 ships 40K and 80K budgets.
 * @param ignoreEos         keep generating past the end-of-sentence token, which then counts as output (benchmarks
 *                          with fixed output lengths)
 * @param penalties         presence, frequency and repetition penalties, applied to the logits before sampling
 *                          (greedy included)
 * @param logprobs          -1: no log-probabilities; 0..20: each chosen token's log-probability with that many of
 *                          the most likely alternatives, from the raw logits ({@link TokenLogprob})
 */
public record SamplingParams(float temperature, int topK, float topP, long seed, int maxNewTokens,
                             List<String> stop, int maxThinkingTokens, boolean ignoreEos, Penalties penalties,
                             int logprobs) {

    /** The thinking budgets MiniMax-M1 was trained for. */
    public static final int THINKING_40K = 40_000, THINKING_80K = 80_000;

    public SamplingParams {
        if (!(temperature >= 0) || Float.isInfinite(temperature)) throw new IllegalArgumentException("temperature must be >= 0, got " + temperature);
        if (topK < 0) throw new IllegalArgumentException("top_k must be >= 0, got " + topK);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        if (maxNewTokens < 0) throw new IllegalArgumentException("max_new_tokens must be >= 0, got " + maxNewTokens);
        if (maxThinkingTokens < 0) throw new IllegalArgumentException("max_thinking_tokens must be >= 0, got " + maxThinkingTokens);
        stop = stop == null ? List.of() : List.copyOf(stop);
        for (String s : stop) if (s.isEmpty()) throw new IllegalArgumentException("stop strings must not be empty");
        if (penalties == null) penalties = Penalties.NONE;
        if (logprobs < -1 || logprobs > TokenLogprob.MAX_TOP) {
            throw new IllegalArgumentException("logprobs must be in 0.." + TokenLogprob.MAX_TOP + " (or -1 for none), got " + logprobs);
        }
    }

    /** No penalties, no log-probabilities. */
    public SamplingParams(float temperature, int topK, float topP, long seed, int maxNewTokens, List<String> stop,
                          int maxThinkingTokens, boolean ignoreEos) {
        this(temperature, topK, topP, seed, maxNewTokens, stop, maxThinkingTokens, ignoreEos, Penalties.NONE, -1);
    }

    /** Stops at the end-of-sentence token. */
    public SamplingParams(float temperature, int topK, float topP, long seed, int maxNewTokens, List<String> stop,
                          int maxThinkingTokens) {
        this(temperature, topK, topP, seed, maxNewTokens, stop, maxThinkingTokens, false);
    }

    public static SamplingParams greedy(int maxNewTokens) {
        return new SamplingParams(0f, 0, 1f, 0L, maxNewTokens, List.of(), 0);
    }

    public boolean isGreedy() { return temperature == 0f; }

    public SamplingParams withPenalties(Penalties p) {
        return new SamplingParams(temperature, topK, topP, seed, maxNewTokens, stop, maxThinkingTokens, ignoreEos, p, logprobs);
    }

    public SamplingParams withLogprobs(int top) {
        return new SamplingParams(temperature, topK, topP, seed, maxNewTokens, stop, maxThinkingTokens, ignoreEos, penalties, top);
    }

    /**
     * The parameters of choice {@code index} of a request asking for several samples: the same but for the seed,
     * {@link #choiceSeed}, so each choice is reproducible on its own and choice 0 is what a single sample gives.
     */
    public SamplingParams forChoice(int index) {
        if (index == 0) return this;
        return new SamplingParams(temperature, topK, topP, choiceSeed(seed, index), maxNewTokens, stop, maxThinkingTokens,
                ignoreEos, penalties, logprobs);
    }

    /**
     * The seed of choice {@code index}: the request's seed for choice 0, else MurmurHash3's 64-bit finaliser of
     * {@code seed + index * 0x9E3779B97F4A7C15} (the golden-ratio increment SplittableRandom uses), so the choices'
     * generators are unrelated and every worker derives the same ones.
     */
    public static long choiceSeed(long seed, int index) {
        if (index == 0) return seed;
        long z = seed + index * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 33)) * 0xff51afd7ed558ccdL;
        z = (z ^ (z >>> 33)) * 0xc4ceb9fe1a85ec53L;
        return z ^ (z >>> 33);
    }
}
