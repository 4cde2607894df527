package io.lightmesh.router;

import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.generate.TokenLogprob;
import io.lightmesh.proto.v1.SamplingParams;

/**
 * Range checks of the sampling fields for several choices, log-probabilities and penalties, answered with
 * INVALID_ARGUMENT naming the field (the engine checks the same ranges again when it builds the generation).
 */
final class SamplingChecks {
    private SamplingChecks() {}

    static void check(SamplingParams s) {
        if (s.getN() < 0 || s.getN() > Generator.MAX_CHOICES) throw Prompts.invalid("sampling.n must be in 1.." + Generator.MAX_CHOICES + ", got " + s.getN());
        if (s.hasLogprobs() && (s.getLogprobs() < 0 || s.getLogprobs() > TokenLogprob.MAX_TOP)) {
            throw Prompts.invalid("sampling.logprobs must be in 0.." + TokenLogprob.MAX_TOP + ", got " + s.getLogprobs());
        }
        if (s.hasPromptLogprobs() && (s.getPromptLogprobs() < 0 || s.getPromptLogprobs() > TokenLogprob.MAX_TOP)) {
            throw Prompts.invalid("sampling.prompt_logprobs must be in 0.." + TokenLogprob.MAX_TOP + ", got " + s.getPromptLogprobs());
        }
        if (!(s.getPresencePenalty() >= -2 && s.getPresencePenalty() <= 2)) {
            throw Prompts.invalid("sampling.presence_penalty must be in [-2, 2], got " + s.getPresencePenalty());
        }
        if (!(s.getFrequencyPenalty() >= -2 && s.getFrequencyPenalty() <= 2)) {
            throw Prompts.invalid("sampling.frequency_penalty must be in [-2, 2], got " + s.getFrequencyPenalty());
        }
        if (s.hasRepetitionPenalty() && !(s.getRepetitionPenalty() > 0 && Float.isFinite(s.getRepetitionPenalty()))) {
            throw Prompts.invalid("sampling.repetition_penalty must be > 0, got " + s.getRepetitionPenalty());
        }
    }
}
