package io.lightmesh.openai;

import io.lightmesh.client.Choice;
import io.lightmesh.client.Completion;
import io.lightmesh.client.Delta;
import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.TokenLogprob;
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
        Long logprobs = Fields.integer(body, "logprobs", "logprobs", 0, Sampling.MAX_LOGPROBS); // OpenAI allows 5, vLLM 20
        b.requestId(requestId);
        Sampling.apply(body, b);
        if (logprobs != null) {
            b.logprobs(logprobs.intValue());
            if (echo) b.promptLogprobs(logprobs.intValue()); // the echoed prompt is scored too
        }
        b.maxTokens(Sampling.maxTokens(body, defaultMaxTokens));
        boolean[] s = Sampling.streaming(body);
        return new Call(model, b.build(), s[0], s[1], echo ? text : null);
    }

    private static JsonObject choice(int index, String text, String finish) {
        return new JsonObject().put("text", text).put("index", index).put("logprobs", null).put("finish_reason", finish);
    }

    /**
     * The text of the prompt's first token, which the prompt log-probabilities (second token on) leave out: what is
     * left of the echoed text before the other tokens' texts ("" when they do not add up to its end).
     */
    static String firstPromptToken(String prompt, List<TokenLogprob> promptLogprobs) {
        StringBuilder rest = new StringBuilder();
        for (TokenLogprob t : promptLogprobs) rest.append(t.token());
        return prompt.endsWith(rest.toString()) ? prompt.substring(0, prompt.length() - rest.length()) : "";
    }

    /** The echoed prompt's legacy log-probabilities: its first token unscored, then the server's scores. */
    private static LogprobsJson.Legacy echoed(Call call, List<TokenLogprob> promptLogprobs) {
        return new LogprobsJson.Legacy(0).unscored(firstPromptToken(call.echo(), promptLogprobs)).addAll(promptLogprobs);
    }

    /** The whole answer as a {@code text_completion}, one choice per sample asked for. */
    static JsonObject completion(Call call, Completion c, long created) {
        List<Choice> choices = Sampling.choices(c);
        JsonArray out = new JsonArray();
        for (Choice ch : choices) {
            String text = call.echo() == null ? ch.text() : call.echo() + ch.text();
            JsonObject choice = choice(ch.index(), text, Sampling.finishReason(ch.finishReason()));
            if (call.request().logprobs() != null) {
                LogprobsJson.Legacy l = call.echo() == null ? new LogprobsJson.Legacy(0) : echoed(call, c.promptLogprobs());
                choice.put("logprobs", l.addAll(ch.logprobs()).json());
            }
            if (call.request().returnTokenIds()) {
                choice.put("prompt_token_ids", new JsonArray(new ArrayList<>(c.promptTokenIds())))
                        .put("token_ids", new JsonArray(new ArrayList<>(ch.tokenIds())));
            }
            out.add(choice);
        }
        JsonObject r = new JsonObject().put("id", "cmpl-" + c.requestId()).put("object", "text_completion").put("created", created)
                .put("model", call.model()).put("choices", out).put("usage", Sampling.usage(c.usage()));
        if (call.request().promptLogprobs() != null && call.echo() == null) r.put("prompt_logprobs", Sampling.promptLogprobs(c.promptLogprobs()));
        return r;
    }

    /** Makes the chunks of a streamed {@code text_completion}. */
    static final class Chunker implements SseResponse.Format {
        private final Call call;
        private final long created;
        private final String id;
        private final int[] offsets;      // per choice: characters of text sent so far (for text_offset)
        private boolean echoed;

        Chunker(Call call, long created) {
            this.call = call;
            this.created = created;
            this.id = "cmpl-" + call.request().requestId();
            this.offsets = new int[call.request().n()];
        }

        private JsonObject chunk(JsonArray choices) {
            JsonObject c = new JsonObject().put("id", id).put("object", "text_completion").put("created", created)
                    .put("model", call.model()).put("choices", choices);
            if (call.includeUsage()) c.put("usage", null);
            return c;
        }

        private boolean scored() { return call.request().logprobs() != null; }

        /** The echoed prompt, once per choice; with log-probabilities it waits for the first delta, which brings the prompt's. */
        private List<JsonObject> echo(List<TokenLogprob> promptLogprobs) {
            echoed = true;
            List<JsonObject> out = new ArrayList<>();
            for (int i = 0; i < offsets.length; i++) {
                JsonObject ch = choice(i, call.echo(), null);
                if (scored()) ch.put("logprobs", echoed(call, promptLogprobs).json());
                offsets[i] = call.echo().length();
                out.add(chunk(new JsonArray().add(ch)));
            }
            return out;
        }

        @Override
        public List<JsonObject> start() {
            return call.echo() == null || scored() ? List.of() : echo(List.of());
        }

        @Override
        public List<JsonObject> delta(Delta d) {
            List<JsonObject> out = new ArrayList<>();
            if (call.echo() != null && !echoed) out.addAll(echo(d.promptLogprobs()));
            int i = d.choiceIndex();
            String finish = d.endsChoice() ? Sampling.finishReason(d.finishReason()) : null;
            boolean lps = scored() && !d.logprobs().isEmpty();
            boolean ids = call.request().returnTokenIds() && (!d.tokenIds().isEmpty() || !d.promptTokenIds().isEmpty());
            if (!d.text().isEmpty() || finish != null || lps || ids) {
                JsonObject ch = choice(i, d.text(), finish);
                if (lps) ch.put("logprobs", new LogprobsJson.Legacy(offsets[i]).addAll(d.logprobs()).json());
                if (ids) {
                    ch.put("token_ids", new JsonArray(new ArrayList<>(d.tokenIds())));
                    if (!d.promptTokenIds().isEmpty()) ch.put("prompt_token_ids", new JsonArray(new ArrayList<>(d.promptTokenIds())));
                }
                offsets[i] += d.text().length();
                out.add(chunk(new JsonArray().add(ch)));
            }
            if (d.isLast() && call.includeUsage()) out.add(chunk(new JsonArray()).put("usage", Sampling.usage(d.usage())));
            return out;
        }
    }
}
