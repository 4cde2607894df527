package io.lightmesh.openai;

import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.ThinkingBudget;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The request fields shared by chat and text completions: sampling, limits, the thinking budget, several choices,
 * penalties, token ids, and the OpenAI parameters this server does not implement (rejected rather than silently
 * ignored when they would change the answer).
 */
final class Sampling {
    private Sampling() {}

    /** Most stop strings, as OpenAI allows. */
    static final int MAX_STOPS = 4;
    /** Most choices per request (OpenAI allows 128; the server decodes a copy of the state per choice). */
    static final int MAX_CHOICES = 16;
    /** Most alternatives per position (OpenAI's top_logprobs limit; vLLM's for completions' logprobs too). */
    static final int MAX_LOGPROBS = 20;

    static void apply(JsonObject body, GenerationRequest.Builder b) {
        Double temperature = Fields.number(body, "temperature", "temperature", 0, 2);
        if (temperature != null) b.temperature(temperature);
        Double topP = Fields.number(body, "top_p", "top_p", 0, 1);
        if (topP != null) {
            if (topP == 0) throw ApiError.invalid("top_p", "Invalid 'top_p': must be greater than 0.");
            b.topP(topP);
        }
        Long topK = Fields.integer(body, "top_k", "top_k", -1, Integer.MAX_VALUE);   // vLLM's extension; -1 is "off"
        if (topK != null && topK > 0) b.topK(topK.intValue());
        Long seed = Fields.integer(body, "seed", "seed", Long.MIN_VALUE, Long.MAX_VALUE);
        if (seed != null) b.seed(seed);
        if (Boolean.TRUE.equals(Fields.bool(body, "ignore_eos", "ignore_eos"))) b.ignoreEos(true);   // vLLM's extension
        b.stop(stops(body));

        // Thinking budget: a number of tokens, or one of M1's presets.
        Long maxThinking = Fields.integer(body, "max_thinking_tokens", "max_thinking_tokens", 0, Integer.MAX_VALUE);
        Object preset = body.getValue("thinking_budget");
        if (maxThinking != null && preset != null) {
            throw ApiError.invalid("thinking_budget", "Set only one of 'max_thinking_tokens' and 'thinking_budget'.");
        }
        if (maxThinking != null) b.maxThinkingTokens(maxThinking.intValue());
        if (preset != null) b.maxThinkingTokens(thinkingBudget(preset));

        Long n = Fields.integer(body, "n", "n", 1, MAX_CHOICES);
        if (n != null) b.n(n.intValue());
        Double presence = Fields.number(body, "presence_penalty", "presence_penalty", -2, 2);
        if (presence != null) b.presencePenalty(presence);
        Double frequency = Fields.number(body, "frequency_penalty", "frequency_penalty", -2, 2);
        if (frequency != null) b.frequencyPenalty(frequency);
        Double repetition = Fields.number(body, "repetition_penalty", "repetition_penalty", 0, Double.MAX_VALUE); // vLLM's extension
        if (repetition != null) {
            if (repetition == 0) throw ApiError.invalid("repetition_penalty", "Invalid 'repetition_penalty': must be greater than 0.");
            b.repetitionPenalty(repetition);
        }
        if (Boolean.TRUE.equals(Fields.bool(body, "return_token_ids", "return_token_ids"))) b.returnTokenIds(true); // vLLM's extension
        Long promptLogprobs = Fields.integer(body, "prompt_logprobs", "prompt_logprobs", 0, MAX_LOGPROBS);           // vLLM's extension
        if (promptLogprobs != null) b.promptLogprobs(promptLogprobs.intValue());
        JsonObject bias = Fields.object(body, "logit_bias", "logit_bias");
        if (bias != null && !bias.isEmpty()) throw ApiError.unsupported("logit_bias", "'logit_bias' is not supported.");
    }

    /** The token count of a {@code thinking_budget}: "40k", "80k" (M1's presets) or a number of tokens. */
    static int thinkingBudget(Object preset) {
        if (preset instanceof Number) {
            JsonObject o = new JsonObject().put("thinking_budget", preset);
            return Fields.integer(o, "thinking_budget", "thinking_budget", 0, Integer.MAX_VALUE).intValue();
        }
        if (preset instanceof String s) {
            switch (s.toLowerCase(Locale.ROOT)) {
                case "40k" -> { return ThinkingBudget.M1_40K.tokens(); }
                case "80k" -> { return ThinkingBudget.M1_80K.tokens(); }
                default -> { }
            }
        }
        throw ApiError.invalid("thinking_budget", "Invalid 'thinking_budget': expected \"40k\", \"80k\" or a number of tokens.");
    }

    /** Most tokens to generate: {@code max_completion_tokens}, else {@code max_tokens}, else the default (null: the server's). */
    static Integer maxTokens(JsonObject body, Integer dflt) {
        Long mct = Fields.integer(body, "max_completion_tokens", "max_completion_tokens", 1, Integer.MAX_VALUE);
        Long mt = Fields.integer(body, "max_tokens", "max_tokens", 1, Integer.MAX_VALUE);
        if (mct != null) return mct.intValue();
        if (mt != null) return mt.intValue();
        return dflt;
    }

    static List<String> stops(JsonObject body) {
        Object v = body.getValue("stop");
        List<String> out = new ArrayList<>();
        if (v == null) return out;
        if (v instanceof String s) {
            if (s.isEmpty()) throw ApiError.invalid("stop", "Invalid 'stop': empty string.");
            out.add(s);
            return out;
        }
        if (!(v instanceof JsonArray a)) throw ApiError.wrongType("stop", "a string or an array of strings", v);
        if (a.size() > MAX_STOPS) throw ApiError.invalid("stop", "Invalid 'stop': at most " + MAX_STOPS + " stop strings, got " + a.size() + ".");
        for (int i = 0; i < a.size(); i++) {
            if (!(a.getValue(i) instanceof String s)) throw ApiError.wrongType("stop[" + i + "]", "a string", a.getValue(i));
            if (s.isEmpty()) throw ApiError.invalid("stop[" + i + "]", "Invalid 'stop[" + i + "]': empty string.");
            out.add(s);
        }
        return out;
    }

    /** {@code stream} and {@code stream_options.include_usage}: {streaming, includeUsage}. */
    static boolean[] streaming(JsonObject body) {
        boolean stream = Boolean.TRUE.equals(Fields.bool(body, "stream", "stream"));
        JsonObject opts = Fields.object(body, "stream_options", "stream_options");
        boolean usage = false;
        if (opts != null) {
            if (!stream) throw ApiError.invalid("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
            usage = Boolean.TRUE.equals(Fields.bool(opts, "include_usage", "stream_options.include_usage"));
        }
        return new boolean[] {stream, usage};
    }

    /** The choices of an answer: the SDK's per-sample choices, or, for a single sample, the answer itself as choice 0. */
    static List<io.lightmesh.client.Choice> choices(io.lightmesh.client.Completion c) {
        return c.choices().isEmpty()
                ? List.of(new io.lightmesh.client.Choice(0, c.text(), c.reasoning(), c.toolCalls(), c.tokenIds(), c.logprobs(), c.finishReason(),
                        c.matchedStop(), c.usage().completionTokens(), c.usage().reasoningTokens()))
                : c.choices();
    }

    /** OpenAI's finish_reason for the SDK's. */
    static String finishReason(io.lightmesh.client.FinishReason r) {
        return switch (r) {
            case STOP, CANCELLED -> "stop";
            case LENGTH -> "length";
            case TOOL_CALLS -> "tool_calls";
        };
    }

    /**
     * vLLM's {@code prompt_logprobs}: one entry per prompt token, null for the first (nothing predicts it), else a map
     * from token id to {@code {"logprob", "rank", "decoded_token"}} holding the prompt's token and the alternatives
     * (rank: position among the alternatives from 1, or null for a prompt token outside them).
     */
    static JsonArray promptLogprobs(List<io.lightmesh.client.TokenLogprob> lps) {
        JsonArray out = new JsonArray().addNull();
        for (io.lightmesh.client.TokenLogprob t : lps) {
            JsonObject m = new JsonObject();
            Integer rank = null;
            for (int i = 0; i < t.topLogprobs().size(); i++) if (t.topLogprobs().get(i).tokenId() == t.tokenId()) { rank = i + 1; break; }
            m.put(Integer.toString(t.tokenId()), new JsonObject().put("logprob", t.logprob()).put("rank", rank).put("decoded_token", t.token()));
            for (int i = 0; i < t.topLogprobs().size(); i++) {
                io.lightmesh.client.TokenLogprob alt = t.topLogprobs().get(i);
                if (!m.containsKey(Integer.toString(alt.tokenId()))) {
                    m.put(Integer.toString(alt.tokenId()), new JsonObject().put("logprob", alt.logprob()).put("rank", i + 1).put("decoded_token", alt.token()));
                }
            }
            out.add(m);
        }
        return out;
    }

    /** OpenAI's usage object. */
    static JsonObject usage(io.lightmesh.client.Usage u) {
        return new JsonObject().put("prompt_tokens", u.promptTokens()).put("completion_tokens", u.completionTokens())
                .put("total_tokens", u.totalTokens())
                .put("prompt_tokens_details", new JsonObject().put("cached_tokens", u.cachedTokens()))
                .put("completion_tokens_details", new JsonObject().put("reasoning_tokens", u.reasoningTokens()));
    }
}
