package io.lightmesh.openai;

import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.ThinkingBudget;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The request fields shared by chat and text completions: sampling, limits, the thinking budget, and the
 * OpenAI parameters this server does not implement (rejected rather than silently ignored when they would change
 * the answer).
 */
final class Sampling {
    private Sampling() {}

    /** Most stop strings, as OpenAI allows. */
    static final int MAX_STOPS = 4;

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

        Long n = Fields.integer(body, "n", "n", 1, 128);
        if (n != null && n != 1) throw ApiError.unsupported("n", "Only n = 1 is supported: ask several times for several answers.");
        for (String penalty : List.of("presence_penalty", "frequency_penalty")) {
            Double p = Fields.number(body, penalty, penalty, -2, 2);
            if (p != null && p != 0) throw ApiError.unsupported(penalty, "'" + penalty + "' is not supported; leave it out or set 0.");
        }
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

    /** OpenAI's finish_reason for the SDK's. */
    static String finishReason(io.lightmesh.client.FinishReason r) {
        return switch (r) {
            case STOP, CANCELLED -> "stop";
            case LENGTH -> "length";
            case TOOL_CALLS -> "tool_calls";
        };
    }

    /** OpenAI's usage object. */
    static JsonObject usage(io.lightmesh.client.Usage u) {
        return new JsonObject().put("prompt_tokens", u.promptTokens()).put("completion_tokens", u.completionTokens())
                .put("total_tokens", u.totalTokens())
                .put("prompt_tokens_details", new JsonObject().put("cached_tokens", u.cachedTokens()))
                .put("completion_tokens_details", new JsonObject().put("reasoning_tokens", u.reasoningTokens()));
    }
}
