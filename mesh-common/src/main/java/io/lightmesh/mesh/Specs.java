package io.lightmesh.mesh;

import io.lightmesh.engine.generate.Generation;
import io.lightmesh.engine.generate.SamplingParams;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tokenizer.Tokenizer;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerationSpec;

/**
 * The wire form of a generation (lightmesh.v1 {@link GenerationSpec}) and the engine's {@link Generation}: every
 * worker rebuilds the same generation from the spec, so prefill, decode and a resume after a lost worker apply the
 * engine's one set of rules (sampling, eos, stop strings, token limit, thinking budget), as {@code ./lightmesh
 * generate} does.
 */
public final class Specs {
    private Specs() {}

    /**
     * The engine's parameters for a resolved spec (the router fills in seed and max_new_tokens).
     *
     * @throws IllegalArgumentException naming the bad field
     */
    public static SamplingParams sampling(io.lightmesh.proto.v1.SamplingParams p) {
        return new SamplingParams(p.hasTemperature() ? p.getTemperature() : 1f, p.getTopK(), p.hasTopP() ? p.getTopP() : 1f,
                p.getSeed(), p.getMaxNewTokens(), p.getStopList(), p.getMaxThinkingTokens(), p.getIgnoreEos());
    }

    /** The generation of {@code spec} after the tokens it already generated (spec.generated_tokens). */
    public static Generation resume(GenerationSpec spec, SequenceState state, Tokenizer tokenizer) {
        int[] done = new int[spec.getGeneratedTokensCount()];
        for (int i = 0; i < done.length; i++) done[i] = spec.getGeneratedTokens(i);
        return Generation.resume(spec.getRequestId(), state, sampling(spec.getSampling()), tokenizer, done);
    }

    /** The prompt followed by the tokens already generated: what a (re-)prefill runs over. */
    public static int[] context(GenerationSpec spec) {
        int p = spec.getPromptTokensCount();
        int[] c = new int[p + spec.getGeneratedTokensCount()];
        for (int i = 0; i < p; i++) c[i] = spec.getPromptTokens(i);
        for (int i = 0; i < spec.getGeneratedTokensCount(); i++) c[p + i] = spec.getGeneratedTokens(i);
        return c;
    }

    public static FinishReason finishReason(io.lightmesh.engine.generate.FinishReason r) {
        return switch (r) {
            case STOP -> FinishReason.FINISH_REASON_STOP;
            case LENGTH -> FinishReason.FINISH_REASON_LENGTH;
            case CANCELLED -> FinishReason.FINISH_REASON_CANCELLED;
        };
    }
}
