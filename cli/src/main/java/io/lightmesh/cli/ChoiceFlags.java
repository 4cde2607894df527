package io.lightmesh.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.generate.Penalties;
import io.lightmesh.engine.generate.SamplingParams;
import io.lightmesh.engine.generate.TokenLogprob;
import io.lightmesh.engine.tokenizer.Tokenizer;

import picocli.CommandLine.Option;

import java.util.List;

/**
 * {@code generate}'s flags for several choices, log-probabilities and penalties ({@code --n}, {@code --logprobs},
 * {@code --prompt-logprobs}, {@code --presence-penalty}, {@code --frequency-penalty}, {@code --repetition-penalty}),
 * for the in-process engine and for a mesh, and their part of {@code --json}'s output.
 */
final class ChoiceFlags {
    @Option(names = "--n", paramLabel = "N", defaultValue = "1", description = "Choices to sample from one prefill (1..16).")
    int n;
    @Option(names = "--logprobs", paramLabel = "K", defaultValue = "-1",
            description = "Each generated token's log-probability and the K most likely alternatives (0..20).")
    int logprobs; // -1: not asked for
    @Option(names = "--prompt-logprobs", paramLabel = "K", defaultValue = "-1",
            description = "The prompt tokens' log-probabilities with K alternatives each (0..20).")
    int promptLogprobs; // -1: not asked for
    @Option(names = "--presence-penalty", paramLabel = "P", defaultValue = "0") float presencePenalty;
    @Option(names = "--frequency-penalty", paramLabel = "P", defaultValue = "0") float frequencyPenalty;
    @Option(names = "--repetition-penalty", paramLabel = "R", defaultValue = "1") float repetitionPenalty;

    Penalties penalties;

    /** Checks the ranges; call once after parsing. */
    ChoiceFlags validate() {
        if (n < 1 || n > Generator.MAX_CHOICES) throw new UsageException("--n must be in 1.." + Generator.MAX_CHOICES + ", got " + n);
        if (logprobs < -1 || logprobs > TokenLogprob.MAX_TOP) throw new UsageException("--logprobs must be in 0.." + TokenLogprob.MAX_TOP + ", got " + logprobs);
        if (promptLogprobs < -1 || promptLogprobs > TokenLogprob.MAX_TOP) {
            throw new UsageException("--prompt-logprobs must be in 0.." + TokenLogprob.MAX_TOP + ", got " + promptLogprobs);
        }
        try {
            penalties = new Penalties(presencePenalty, frequencyPenalty, repetitionPenalty);
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
        return this;
    }

    SamplingParams apply(SamplingParams p) { return p.withPenalties(penalties).withLogprobs(logprobs); }

    io.lightmesh.client.GenerationRequest.Builder apply(io.lightmesh.client.GenerationRequest.Builder b) {
        b.n(n).presencePenalty(penalties.presence()).frequencyPenalty(penalties.frequency());
        if (penalties.repetition() != 1f) b.repetitionPenalty(penalties.repetition());
        if (logprobs >= 0) b.logprobs(logprobs);
        if (promptLogprobs >= 0) b.promptLogprobs(promptLogprobs);
        return b;
    }

    /** {@code [{"id", "token", "logprob", "top_logprobs": [...]}]} of the engine's log-probabilities. */
    static ArrayNode engineJson(ArrayNode out, List<TokenLogprob> lps, Tokenizer tok) {
        for (TokenLogprob t : lps) {
            ObjectNode o = entry(out.addObject(), t.token(), t.logprob(), tok);
            ArrayNode top = o.putArray("top_logprobs");
            for (int i = 0; i < t.topTokens().length; i++) entry(top.addObject(), t.topTokens()[i], t.topLogprobs()[i], tok);
        }
        return out;
    }

    private static ObjectNode entry(ObjectNode o, int id, double logprob, Tokenizer tok) {
        o.put("id", id);
        if (tok != null) o.put("token", tok.decode(new int[]{id}));
        return o.put("logprob", logprob);
    }

    /** The same shape from the SDK's log-probabilities. */
    static ArrayNode sdkJson(ArrayNode out, List<io.lightmesh.client.TokenLogprob> lps) {
        for (io.lightmesh.client.TokenLogprob t : lps) {
            ObjectNode o = out.addObject().put("id", t.tokenId()).put("token", t.token()).put("logprob", t.logprob());
            ArrayNode top = o.putArray("top_logprobs");
            for (var alt : t.topLogprobs()) top.addObject().put("id", alt.tokenId()).put("token", alt.token()).put("logprob", alt.logprob());
        }
        return out;
    }
}
