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
 */
public record SamplingParams(float temperature, int topK, float topP, long seed, int maxNewTokens,
                             List<String> stop, int maxThinkingTokens, boolean ignoreEos) {

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
}
