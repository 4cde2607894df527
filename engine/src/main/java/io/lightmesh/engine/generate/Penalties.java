package io.lightmesh.engine.generate;

import java.util.Map;

/**
 * Penalties on tokens already seen, applied to the logits before temperature, top-k and top-p (and before greedy's
 * argmax), in vLLM's order: first the repetition penalty, then the frequency and presence penalties.
 *
 * @param presence   OpenAI's presence_penalty, in [-2, 2]: subtracted once from the logit of every token that occurs
 *                   in the output so far
 * @param frequency  OpenAI's frequency_penalty, in [-2, 2]: subtracted from a token's logit once per occurrence in
 *                   the output so far
 * @param repetition vLLM's and HF's repetition_penalty, > 0 (1: none): the logit of every token seen in the prompt
 *                   or the output is divided by it when positive and multiplied by it otherwise
 */
public record Penalties(float presence, float frequency, float repetition) {
    public static final Penalties NONE = new Penalties(0f, 0f, 1f);

    public Penalties {
        if (!(presence >= -2 && presence <= 2)) throw new IllegalArgumentException("presence_penalty must be in [-2, 2], got " + presence);
        if (!(frequency >= -2 && frequency <= 2)) throw new IllegalArgumentException("frequency_penalty must be in [-2, 2], got " + frequency);
        if (!(repetition > 0) || Float.isInfinite(repetition)) throw new IllegalArgumentException("repetition_penalty must be > 0, got " + repetition);
    }

    /** Whether applying these changes any logits. */
    public boolean active() { return presence != 0f || frequency != 0f || repetition != 1f; }

    /** The penalised copy of {@code logits}, given what the prompt and the output hold so far. */
    public float[] apply(float[] logits, TokenHistory history) {
        float[] out = logits.clone();
        if (repetition != 1f) {
            history.forEachSeen(t -> {
                if (t < out.length) out[t] = out[t] > 0 ? out[t] / repetition : out[t] * repetition;
            });
        }
        if (presence != 0f || frequency != 0f) {
            for (Map.Entry<Integer, Integer> e : history.outputCounts().entrySet()) {
                int t = e.getKey();
                if (t < out.length) out[t] -= frequency * e.getValue() + presence;
            }
        }
        return out;
    }
}
