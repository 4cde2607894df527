package io.lightmesh.mesh;

import io.lightmesh.engine.generate.Generation;
import io.lightmesh.engine.generate.Penalties;
import io.lightmesh.engine.generate.SamplingParams;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tokenizer.Tokenizer;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.TokenLogprob;

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
                p.getSeed(), p.getMaxNewTokens(), p.getStopList(), p.getMaxThinkingTokens(), p.getIgnoreEos(),
                new Penalties(p.getPresencePenalty(), p.getFrequencyPenalty(), p.hasRepetitionPenalty() ? p.getRepetitionPenalty() : 1f),
                p.hasLogprobs() ? p.getLogprobs() : -1);
    }

    /** How many choices the spec asks for (sampling.n; 0 means 1). */
    public static int choices(GenerationSpec spec) { return Math.max(1, spec.getSampling().getN()); }

    /** How many alternatives per prompt position the spec's prompt log-probabilities list; -1: none asked for. */
    public static int promptLogprobs(GenerationSpec spec) {
        return spec.getSampling().hasPromptLogprobs() ? spec.getSampling().getPromptLogprobs() : -1;
    }

    /** The generation of {@code spec} after the tokens it already generated (spec.generated_tokens). */
    public static Generation resume(GenerationSpec spec, SequenceState state, Tokenizer tokenizer) {
        return resume(spec, 0, state, tokenizer);
    }

    /**
     * The generation of choice {@code choice} of {@code spec} (its seed derived as {@link SamplingParams#forChoice}
     * does), after the tokens it already generated; spec.generated_tokens are choice 0's, so other choices start
     * afresh (a request with several choices is resumed only before any token).
     */
    public static Generation resume(GenerationSpec spec, int choice, SequenceState state, Tokenizer tokenizer) {
        int[] done = new int[choice == 0 ? spec.getGeneratedTokensCount() : 0];
        for (int i = 0; i < done.length; i++) done[i] = spec.getGeneratedTokens(i);
        int[] prompt = new int[spec.getPromptTokensCount()];
        for (int i = 0; i < prompt.length; i++) prompt[i] = spec.getPromptTokens(i);
        return Generation.resume(spec.getRequestId(), state, sampling(spec.getSampling()).forChoice(choice), tokenizer, prompt, done);
    }

    /** The wire form of an engine log-probability (token texts are left to the router). */
    public static TokenLogprob logprob(io.lightmesh.engine.generate.TokenLogprob lp) {
        TokenLogprob.Builder b = TokenLogprob.newBuilder().setTokenId(lp.token()).setLogprob(lp.logprob());
        for (int i = 0; i < lp.topTokens().length; i++) {
            b.addTopLogprobs(TokenLogprob.newBuilder().setTokenId(lp.topTokens()[i]).setLogprob(lp.topLogprobs()[i]));
        }
        return b.build();
    }

    /** The engine form of a wire log-probability. */
    public static io.lightmesh.engine.generate.TokenLogprob logprob(TokenLogprob lp) {
        int[] ids = new int[lp.getTopLogprobsCount()];
        float[] lps = new float[ids.length];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = lp.getTopLogprobs(i).getTokenId();
            lps[i] = lp.getTopLogprobs(i).getLogprob();
        }
        return new io.lightmesh.engine.generate.TokenLogprob(lp.getTokenId(), lp.getLogprob(), ids, lps);
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
