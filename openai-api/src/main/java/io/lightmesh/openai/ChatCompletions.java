package io.lightmesh.openai;

import io.lightmesh.client.ChatMessage;
import io.lightmesh.client.Choice;
import io.lightmesh.client.Completion;
import io.lightmesh.client.Delta;
import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.Role;
import io.lightmesh.client.Tool;
import io.lightmesh.client.ToolCall;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.Json;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * {@code POST /v1/chat/completions}: OpenAI's chat request to a chat {@link GenerationRequest}, and the answer back
 * to OpenAI's {@code chat.completion} (or {@code chat.completion.chunk}s). Reasoning goes to {@code reasoning_content},
 * tool calls to {@code tool_calls}; neither is mixed into {@code content}.
 */
final class ChatCompletions {
    private ChatCompletions() {}

    private static final Pattern TOOL_NAME = Pattern.compile("[a-zA-Z0-9_-]{1,64}");

    /** A validated chat request. */
    record Call(String model, GenerationRequest request, boolean stream, boolean includeUsage) {}

    /**
     * Validates and translates the body. {@code tool_choice}: "none" offers no tools to the model; "auto" (the
     * default) offers them all; "required" offers them all and tells the model, in the system turn, that it must call
     * one; a named function offers only that one and tells the model to call it. M1 has no constrained decoding here,
     * so "required" and named choices steer the model through its prompt rather than force it.
     */
    static Call parse(JsonObject body, String requestId) {
        String model = Fields.requiredString(body, "model", "model");
        List<ChatMessage> messages = messages(body);
        List<Tool> tools = tools(body);
        String instruction = null;
        Object choice = body.getValue("tool_choice");
        if (choice != null) {
            if (choice instanceof String s) {
                switch (s) {
                    case "none" -> tools = List.of();
                    case "auto" -> { }
                    case "required" -> {
                        if (tools.isEmpty()) throw ApiError.invalid("tool_choice", "'tool_choice' is only allowed when 'tools' are specified.");
                        instruction = "In this turn you must call at least one of the tools provided.";
                    }
                    default -> throw ApiError.invalid("tool_choice",
                            "Invalid 'tool_choice': expected \"none\", \"auto\", \"required\" or a function, but got \"" + s + "\".");
                }
            } else if (choice instanceof JsonObject o) {
                JsonObject f = Fields.object(o, "function", "tool_choice.function");
                String name = f == null ? null : Fields.string(f, "name", "tool_choice.function.name");
                if (!"function".equals(o.getValue("type")) || name == null) {
                    throw ApiError.invalid("tool_choice", "Invalid 'tool_choice': expected {\"type\": \"function\", \"function\": {\"name\": ...}}.");
                }
                List<Tool> chosen = tools.stream().filter(t -> t.name().equals(name)).toList();
                if (chosen.isEmpty()) {
                    throw ApiError.invalid("tool_choice", "Invalid 'tool_choice': no function named '" + name + "' in 'tools'.");
                }
                tools = chosen;
                instruction = "In this turn you must call the tool " + name + ".";
            } else {
                throw ApiError.wrongType("tool_choice", "a string or an object", choice);
            }
        }
        Fields.bool(body, "parallel_tool_calls", "parallel_tool_calls");   // accepted; M1 decides how many calls it makes
        boolean logprobs = Boolean.TRUE.equals(Fields.bool(body, "logprobs", "logprobs"));
        Long top = Fields.integer(body, "top_logprobs", "top_logprobs", 0, Sampling.MAX_LOGPROBS);
        if (top != null && !logprobs) {
            throw ApiError.invalid("top_logprobs", "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.");
        }
        JsonObject format = Fields.object(body, "response_format", "response_format");
        if (format != null && !"text".equals(format.getValue("type"))) {
            throw ApiError.unsupported("response_format", "Only 'response_format' {\"type\": \"text\"} is supported.");
        }
        if (instruction != null) messages = withInstruction(messages, instruction);

        GenerationRequest.Builder b = GenerationRequest.chat(messages).tools(tools).requestId(requestId);
        Sampling.apply(body, b);
        if (logprobs) b.logprobs(top == null ? 0 : top.intValue());
        Integer max = Sampling.maxTokens(body, null);
        if (max != null) b.maxTokens(max);
        boolean[] s = Sampling.streaming(body);
        return new Call(model, b.build(), s[0], s[1]);
    }

    private static List<ChatMessage> withInstruction(List<ChatMessage> messages, String instruction) {
        List<ChatMessage> out = new ArrayList<>(messages);
        ChatMessage first = out.getFirst();
        if (first.role() == Role.SYSTEM) {
            out.set(0, ChatMessage.system(first.content().isEmpty() ? instruction : first.content() + "\n\n" + instruction));
        } else {
            out.addFirst(ChatMessage.system(instruction));
        }
        return out;
    }

    private static List<ChatMessage> messages(JsonObject body) {
        JsonArray arr = Fields.array(body, "messages", "messages");
        if (arr == null) throw ApiError.invalid("messages", "Missing required parameter: 'messages'.");
        if (arr.isEmpty()) throw ApiError.invalid("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1.");
        List<ChatMessage> out = new ArrayList<>();
        Map<String, String> callNames = new HashMap<>();   // tool call id -> function name, from assistant turns
        for (int i = 0; i < arr.size(); i++) {
            String p = "messages[" + i + "]";
            JsonObject m = Fields.objectAt(arr, i, p);
            String role = Fields.requiredString(m, "role", p + ".role");
            String name = Fields.string(m, "name", p + ".name");
            switch (role) {
                case "system", "developer" -> out.add(new ChatMessage(Role.SYSTEM, content(m, p, true), name, List.of(), "", ""));
                case "user" -> out.add(new ChatMessage(Role.USER, content(m, p, true), name, List.of(), "", ""));
                case "assistant" -> {
                    List<ToolCall> calls = assistantCalls(m, p);
                    for (ToolCall c : calls) callNames.put(c.id(), c.name());
                    String text = content(m, p, calls.isEmpty());
                    String reasoning = Fields.string(m, "reasoning_content", p + ".reasoning_content");
                    out.add(new ChatMessage(Role.ASSISTANT, text, name, calls, "", reasoning));
                }
                case "tool" -> {
                    String id = Fields.requiredString(m, "tool_call_id", p + ".tool_call_id");
                    String fn = callNames.get(id);
                    if (fn == null) {
                        throw ApiError.invalid(p + ".tool_call_id", "Invalid parameter: messages with role 'tool' must be a response "
                                + "to a preceding message with 'tool_calls'; no tool call has id '" + id + "'.");
                    }
                    out.add(ChatMessage.toolResult(id, fn, content(m, p, true)));
                }
                case "function" -> throw ApiError.unsupported(p + ".role", "Role 'function' is deprecated and not supported: use 'tool'.");
                default -> throw ApiError.invalid(p + ".role", "Invalid value: '" + role
                        + "'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.");
            }
        }
        return out;
    }

    /** A message's text: a string, or an array of text parts (joined by newlines). */
    private static String content(JsonObject m, String p, boolean required) {
        Object v = m.getValue("content");
        if (v == null) {
            if (required) throw ApiError.invalid(p + ".content", "Missing required parameter: '" + p + ".content'.");
            return "";
        }
        if (v instanceof String s) return s;
        if (!(v instanceof JsonArray parts)) throw ApiError.wrongType(p + ".content", "a string or an array of content parts", v);
        List<String> texts = new ArrayList<>();
        for (int j = 0; j < parts.size(); j++) {
            String pp = p + ".content[" + j + "]";
            JsonObject part = Fields.objectAt(parts, j, pp);
            String type = Fields.requiredString(part, "type", pp + ".type");
            if (!type.equals("text")) throw ApiError.unsupported(pp + ".type", "Only text content parts are supported, not '" + type + "'.");
            texts.add(Fields.requiredString(part, "text", pp + ".text"));
        }
        return String.join("\n", texts);
    }

    private static List<ToolCall> assistantCalls(JsonObject m, String p) {
        JsonArray arr = Fields.array(m, "tool_calls", p + ".tool_calls");
        List<ToolCall> calls = new ArrayList<>();
        if (arr == null) return calls;
        for (int j = 0; j < arr.size(); j++) {
            String pp = p + ".tool_calls[" + j + "]";
            JsonObject c = Fields.objectAt(arr, j, pp);
            String id = Fields.requiredString(c, "id", pp + ".id");
            String type = Fields.string(c, "type", pp + ".type");
            if (type != null && !type.equals("function")) throw ApiError.invalid(pp + ".type", "Only tool calls of type 'function' are supported.");
            JsonObject f = Fields.object(c, "function", pp + ".function");
            if (f == null) throw ApiError.invalid(pp + ".function", "Missing required parameter: '" + pp + ".function'.");
            String name = Fields.requiredString(f, "name", pp + ".function.name");
            String args = Fields.requiredString(f, "arguments", pp + ".function.arguments");
            try {
                Json.decodeValue(args.isBlank() ? "{}" : args);
            } catch (DecodeException e) {
                throw ApiError.invalid(pp + ".function.arguments", "Invalid '" + pp + ".function.arguments': not valid JSON.");
            }
            calls.add(new ToolCall(id, j, name, args.isBlank() ? "{}" : args));
        }
        return calls;
    }

    private static List<Tool> tools(JsonObject body) {
        JsonArray arr = Fields.array(body, "tools", "tools");
        List<Tool> tools = new ArrayList<>();
        if (arr == null) return tools;
        for (int i = 0; i < arr.size(); i++) {
            String p = "tools[" + i + "]";
            JsonObject t = Fields.objectAt(arr, i, p);
            String type = Fields.requiredString(t, "type", p + ".type");
            if (!type.equals("function")) throw ApiError.unsupported(p + ".type", "Only tools of type 'function' are supported.");
            JsonObject f = Fields.object(t, "function", p + ".function");
            if (f == null) throw ApiError.invalid(p + ".function", "Missing required parameter: '" + p + ".function'.");
            String name = Fields.requiredString(f, "name", p + ".function.name");
            if (!TOOL_NAME.matcher(name).matches()) {
                throw ApiError.invalid(p + ".function.name", "Invalid '" + p + ".function.name': string does not match pattern. "
                        + "Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.");
            }
            String description = Fields.string(f, "description", p + ".function.description");
            JsonObject params = Fields.object(f, "parameters", p + ".function.parameters");
            tools.add(Tool.function(name, description, params == null ? "" : params.encode()));
        }
        return tools;
    }

    // ---- answers ----

    static JsonObject toolCallJson(ToolCall c, boolean withIndex) {
        JsonObject j = new JsonObject();
        if (withIndex) j.put("index", c.index());
        return j.put("id", c.id().isEmpty() ? "call_" + java.util.UUID.randomUUID().toString().replace("-", "") : c.id())
                .put("type", "function")
                .put("function", new JsonObject().put("name", c.name()).put("arguments", c.argumentsJson()));
    }

    /** The whole answer as a {@code chat.completion}, with one choice per sample asked for. */
    static JsonObject completion(Call call, Completion c, long created) {
        List<Choice> choices = Sampling.choices(c);
        JsonArray out = new JsonArray();
        for (Choice ch : choices) {
            JsonObject message = new JsonObject().put("role", "assistant")
                    .put("content", ch.text().isEmpty() && ch.hasToolCalls() ? null : ch.text())
                    .put("reasoning_content", ch.reasoning().isEmpty() ? null : ch.reasoning());
            if (ch.hasToolCalls()) {
                JsonArray calls = new JsonArray();
                for (ToolCall t : ch.toolCalls()) calls.add(toolCallJson(t, false));
                message.put("tool_calls", calls);
            }
            JsonObject choice = new JsonObject().put("index", ch.index()).put("message", message)
                    .put("logprobs", call.request().logprobs() == null ? null : LogprobsJson.chat(ch.logprobs()))
                    .put("finish_reason", Sampling.finishReason(ch.finishReason()));
            if (call.request().returnTokenIds()) choice.put("token_ids", new JsonArray(new ArrayList<>(ch.tokenIds())));
            out.add(choice);
        }
        JsonObject r = new JsonObject().put("id", "chatcmpl-" + c.requestId()).put("object", "chat.completion").put("created", created)
                .put("model", call.model()).put("choices", out).put("usage", Sampling.usage(c.usage()));
        if (call.request().returnTokenIds()) r.put("prompt_token_ids", new JsonArray(new ArrayList<>(c.promptTokenIds())));
        if (call.request().promptLogprobs() != null) r.put("prompt_logprobs", Sampling.promptLogprobs(c.promptLogprobs()));
        return r;
    }

    /** Makes the {@code chat.completion.chunk}s of a stream. */
    static final class Chunker implements SseResponse.Format {
        private final Call call;
        private final long created;
        private final String id;

        Chunker(Call call, long created) {
            this.call = call;
            this.created = created;
            this.id = "chatcmpl-" + call.request().requestId();
        }

        private JsonObject chunk(int index, JsonObject delta, String finish) {
            JsonObject c = new JsonObject().put("id", id).put("object", "chat.completion.chunk").put("created", created)
                    .put("model", call.model())
                    .put("choices", new JsonArray().add(new JsonObject().put("index", index).put("delta", delta)
                            .put("logprobs", null).put("finish_reason", finish)));
            if (call.includeUsage()) c.put("usage", null);
            return c;
        }

        @Override
        public List<JsonObject> start() {
            List<JsonObject> out = new ArrayList<>();
            for (int i = 0; i < call.request().n(); i++) out.add(chunk(i, new JsonObject().put("role", "assistant").put("content", ""), null));
            return out;
        }

        /**
         * A delta's chunks: reasoning, content and tool calls apart; its tokens' log-probabilities and ids go with the
         * first of them (with a chunk of an empty delta when the tokens released no text yet); the choice's end and the
         * usage follow.
         */
        @Override
        public List<JsonObject> delta(Delta d) {
            int i = d.choiceIndex();
            List<JsonObject> out = new ArrayList<>();
            if (!d.reasoning().isEmpty()) out.add(chunk(i, new JsonObject().put("reasoning_content", d.reasoning()), null));
            if (!d.text().isEmpty()) out.add(chunk(i, new JsonObject().put("content", d.text()), null));
            if (!d.toolCalls().isEmpty()) {
                JsonArray calls = new JsonArray();
                for (ToolCall t : d.toolCalls()) calls.add(toolCallJson(t, true));
                out.add(chunk(i, new JsonObject().put("tool_calls", calls), null));
            }
            boolean ids = call.request().returnTokenIds() && (!d.tokenIds().isEmpty() || !d.promptTokenIds().isEmpty());
            boolean lps = call.request().logprobs() != null && !d.logprobs().isEmpty();
            boolean promptLps = call.request().promptLogprobs() != null && !d.promptLogprobs().isEmpty();
            if (out.isEmpty() && (ids || lps || promptLps)) out.add(chunk(i, new JsonObject(), null));
            if (!out.isEmpty()) {
                JsonObject first = out.getFirst(), choice = first.getJsonArray("choices").getJsonObject(0);
                if (lps) choice.put("logprobs", LogprobsJson.chat(d.logprobs()));
                if (ids) {
                    choice.put("token_ids", new JsonArray(new ArrayList<>(d.tokenIds())));
                    if (!d.promptTokenIds().isEmpty()) first.put("prompt_token_ids", new JsonArray(new ArrayList<>(d.promptTokenIds())));
                }
                if (promptLps) first.put("prompt_logprobs", Sampling.promptLogprobs(d.promptLogprobs()));
            }
            if (d.endsChoice()) out.add(chunk(i, new JsonObject(), Sampling.finishReason(d.finishReason())));
            if (d.isLast() && call.includeUsage()) {
                out.add(new JsonObject().put("id", id).put("object", "chat.completion.chunk").put("created", created)
                        .put("model", call.model()).put("choices", new JsonArray()).put("usage", Sampling.usage(d.usage())));
            }
            return out;
        }
    }
}
