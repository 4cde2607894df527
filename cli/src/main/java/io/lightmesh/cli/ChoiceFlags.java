package io.lightmesh.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.generate.Penalties;
import io.lightmesh.engine.generate.SamplingParams;
import io.lightmesh.engine.generate.TokenLogprob;
import io.lightmesh.engine.tokenizer.Tokenizer;

import java.util.List;
import java.util.Set;

/**
 * {@code generate}'s flags for several choices, log-probabilities and penalties ({@code --n}, {@code --logprobs},
 * {@code --prompt-logprobs}, {@code --presence-penalty}, {@code --frequency-penalty}, {@code --repetition-penalty}),
 * for the in-process engine and for a mesh, and their part of {@code --json}'s output.
 */
final class ChoiceFlags {
    static final Set<String> VALUED = Set.of("--n", "--logprobs", "--prompt-logprobs", "--presence-penalty",
            "--frequency-penalty", "--repetition-penalty");

    final int n, logprobs, promptLogprobs; // -1: not asked for
    final Penalties penalties;

    ChoiceFlags(Args a) {
        n = a.getInt("--n", 1);
        if (n < 1 || n > Generator.MAX_CHOICES) throw new Args.UsageException("--n must be in 1.." + Generator.MAX_CHOICES + ", got " + n);
        logprobs = a.getInt("--logprobs", -1);
        promptLogprobs = a.getInt("--prompt-logprobs", -1);
        for (String f : List.of("--logprobs", "--prompt-logprobs")) {
            int v = a.getInt(f, 0);
            if (v < 0 || v > TokenLogprob.MAX_TOP) throw new Args.UsageException(f + " must be in 0.." + TokenLogprob.MAX_TOP + ", got " + v);
        }
        try {
            penalties = new Penalties(a.getFloat("--presence-penalty", 0f), a.getFloat("--frequency-penalty", 0f),
                    a.getFloat("--repetition-penalty", 1f));
        } catch (IllegalArgumentException e) {
            throw new Args.UsageException(e.getMessage());
        }
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
