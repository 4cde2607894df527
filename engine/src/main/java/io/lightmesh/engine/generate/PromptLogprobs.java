package io.lightmesh.engine.generate;

import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Prefill that also scores the prompt: the log-probability of every prompt token after the first given the tokens
 * before it (OpenAI's {@code echo} with {@code logprobs}, vLLM's {@code prompt_logprobs}), from the raw logits.
 * The prompt runs in pieces of whole lightning blocks, so the logits held at once stay at about 256 rows.
 */
public final class PromptLogprobs {
    /** The last prompt token's logits [V] (predicting the first new token) and the prompt's log-probabilities. */
    public record Result(float[] lastLogits, List<TokenLogprob> logprobs) {}

    private PromptLogprobs() {}

    /**
     * Runs {@code prompt} through {@code model} after what {@code state} holds. {@code logprobs().get(i)} scores
     * {@code prompt[i + 1]}: there are {@code prompt.length - 1} of them (none for the first token, which nothing
     * predicts).
     *
     * @param top how many of the most likely alternatives each position lists (0..20)
     */
    public static Result prefill(MiniMaxModel model, SequenceState state, int[] prompt, int top) {
        if (prompt.length == 0) throw new IllegalArgumentException("prefill needs at least one token");
        int block = model.config().blockSize();
        int piece = Math.max(block, 256 / block * block);
        List<TokenLogprob> out = new ArrayList<>(prompt.length - 1);
        float[] last = null;
        for (int from = 0; from < prompt.length; from += piece) {
            int n = Math.min(piece, prompt.length - from);
            int[] rows = new int[n];
            for (int r = 0; r < n; r++) rows[r] = r;
            float[][] logits = model.prefill(state, Arrays.copyOfRange(prompt, from, from + n), rows);
            for (int r = 0; r < n; r++) {
                int next = from + r + 1;
                if (next < prompt.length) out.add(TokenLogprob.of(logits[r], prompt[next], top));
                else last = logits[r];
            }
        }
        return new Result(last, out);
    }
}
