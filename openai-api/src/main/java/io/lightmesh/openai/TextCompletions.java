package io.lightmesh.openai;

import io.lightmesh.client.Completion;
import io.lightmesh.client.Delta;
import io.lightmesh.client.GenerationRequest;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.util.ArrayList;
import java.util.List;

/**
 * {@code POST /v1/completions}: raw text (or token ids) continued as is, no chat template; the text comes back raw,
 * with the model's {@code <think>} and {@code <tool_calls>} tags where it wrote them.
 */
final class TextCompletions {
    private TextCompletions() {}

    /** OpenAI's default {@code max_tokens} for text completions. */
    static final int DEFAULT_MAX_TOKENS = 16;

    /** A validated completion request; {@code echo} is the prompt to prepend to the answer, or null. */
    record Call(String model, GenerationRequest request, boolean stream, boolean includeUsage, String echo) {}

    static Call parse(JsonObject body, String requestId, int defaultMaxTokens) {
        String model = Fields.requiredString(body, "model", "model");
        Object prompt = body.getValue("prompt");
        GenerationRequest.Builder b;
        String text = null;
        if (prompt == null) throw ApiError.invalid("prompt", "Missing required parameter: 'prompt'.");
        if (prompt instanceof String s) {
            text = s;
        } else if (prompt instanceof JsonArray a) {
            if (a.isEmpty()) throw ApiError.invalid("prompt", "Invalid 'prompt': empty array.");
            if (a.size() == 1 && a.getValue(0) instanceof String s) text = s;
            else if (a.size() == 1 && a.getValue(0) instanceof JsonArray ids) prompt = ids;
            else if (a.getValue(0) instanceof String) {
                throw ApiError.unsupported("prompt", "Only one prompt per request is supported.");
            }
        } else {
            throw ApiError.wrongType("prompt", "a string, an array of token ids, or an array of one string", prompt);
        }
        if (text != null) {
            if (text.isEmpty()) throw ApiError.invalid("prompt", "Invalid 'prompt': empty string.");
            b = GenerationRequest.prompt(text);
        } else {
            JsonArray ids = (JsonArray) prompt;
            List<Integer> tokens = new ArrayList<>();
            for (int i = 0; i < ids.size(); i++) {
                if (!(ids.getValue(i) instanceof Number n) || n.doubleValue() != Math.rint(n.doubleValue()) || n.longValue() < 0
                        || n.longValue() > Integer.MAX_VALUE) {
                    throw ApiError.invalid("prompt[" + i + "]", "Invalid 'prompt[" + i + "]': expected a token id (an integer >= 0).");
                }
                tokens.add(n.intValue());
            }
            b = GenerationRequest.tokens(tokens);
        }
        boolean echo = Boolean.TRUE.equals(Fields.bool(body, "echo", "echo"));
        if (echo && text == null) throw ApiError.unsupported("echo", "'echo' needs a text prompt.");
        String suffix = Fields.string(body, "suffix", "suffix");
        if (suffix != null && !suffix.isEmpty()) throw ApiError.unsupported("suffix", "'suffix' is not supported.");
        Long bestOf = Fields.integer(body, "best_of", "best_of", 1, 20);
        if (bestOf != null && bestOf != 1) throw ApiError.unsupported("best_of", "Only best_of = 1 is supported.");
        Long logprobs = Fields.integer(body, "logprobs", "logprobs", 0, 5);
        if (logprobs != null && logprobs > 0) throw ApiError.unsupported("logprobs", "'logprobs' is not supported.");
        b.requestId(requestId);
        Sampling.apply(body, b);
        b.maxTokens(Sampling.maxTokens(body, defaultMaxTokens));
        boolean[] s = Sampling.streaming(body);
        return new Call(model, b.build(), s[0], s[1], echo ? text : null);
    }

    private static JsonObject choice(String text, String finish) {
        return new JsonObject().put("text", text).put("index", 0).put("logprobs", null).put("finish_reason", finish);
    }

    /** The whole answer as a {@code text_completion}. */
    static JsonObject completion(Call call, Completion c, long created) {
        String text = call.echo() == null ? c.text() : call.echo() + c.text();
        return new JsonObject().put("id", "cmpl-" + c.requestId()).put("object", "text_completion").put("created", created)
                .put("model", call.model())
                .put("choices", new JsonArray().add(choice(text, Sampling.finishReason(c.finishReason()))))
                .put("usage", Sampling.usage(c.usage()));
    }

    /** Makes the chunks of a streamed {@code text_completion}. */
    static final class Chunker implements SseResponse.Format {
        private final Call call;
        private final long created;
        private final String id;

        Chunker(Call call, long created) {
            this.call = call;
            this.created = created;
            this.id = "cmpl-" + call.request().requestId();
        }

        private JsonObject chunk(JsonArray choices) {
            JsonObject c = new JsonObject().put("id", id).put("object", "text_completion").put("created", created)
                    .put("model", call.model()).put("choices", choices);
            if (call.includeUsage()) c.put("usage", null);
            return c;
        }

        @Override
        public List<JsonObject> start() {
            return call.echo() == null ? List.of() : List.of(chunk(new JsonArray().add(choice(call.echo(), null))));
        }

        @Override
        public List<JsonObject> delta(Delta d) {
            List<JsonObject> out = new ArrayList<>();
            String finish = d.isLast() ? Sampling.finishReason(d.finishReason()) : null;
            if (!d.text().isEmpty() || finish != null) out.add(chunk(new JsonArray().add(choice(d.text(), finish))));
            if (d.isLast() && call.includeUsage()) out.add(chunk(new JsonArray()).put("usage", Sampling.usage(d.usage())));
            return out;
        }
    }
}
