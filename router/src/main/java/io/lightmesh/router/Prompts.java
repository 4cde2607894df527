package io.lightmesh.router;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.chat.ChatMessage;
import io.lightmesh.engine.chat.ChatTemplate;
import io.lightmesh.engine.chat.ToolCall;
import io.lightmesh.engine.chat.ToolDefinition;
import io.lightmesh.engine.tokenizer.Tokenizer;
import io.lightmesh.proto.v1.ChatInput;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.Tool;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.TokenizeResponse;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns a request's input into the prompt tokens the model sees, with the engine's tokenizer and M1 chat template:
 * token ids as they are, raw text tokenized as is, a chat rendered by {@link ChatTemplate} (tools in the system
 * turn, generation prompt appended) and then tokenized with its special tokens. Errors are INVALID_ARGUMENT naming
 * the field.
 */
final class Prompts {
    private final Tokenizer tokenizer; // null: the model has no tokenizer.json, token ids only
    private final String model;

    Prompts(Tokenizer tokenizer, String model) {
        this.tokenizer = tokenizer;
        this.model = model;
    }

    /** The prompt tokens of a GenerateRequest (not yet checked against the vocabulary or the length limit). */
    int[] tokens(GenerateRequest r) {
        return switch (r.getInputCase()) {
            case TOKEN_IDS -> r.getTokenIds().getIdsList().stream().mapToInt(Integer::intValue).toArray();
            case PROMPT -> tokenizer("prompt").encode(r.getPrompt());
            case CHAT -> tokenizer("chat").encode(render(r.getChat(), "chat"));
            default -> throw invalid("input: one of prompt, token_ids, chat must be set");
        };
    }

    TokenizeResponse tokenize(TokenizeRequest r) {
        int[] ids = switch (r.getInputCase()) {
            case TEXT -> tokenizer("text").encode(r.getText());
            case CHAT -> tokenizer("chat").encode(render(r.getChat(), "chat"));
            default -> throw invalid("input: one of text, chat must be set");
        };
        TokenizeResponse.Builder b = TokenizeResponse.newBuilder().setCount(ids.length);
        for (int id : ids) {
            b.addIds(id);
            if (r.getReturnPieces()) b.addPieces(tokenizer.decode(new int[]{id}));
        }
        return b.build();
    }

    /** The id of the {@code <think>} token, or -1: a prompt ending with it opens the output inside reasoning. */
    int thinkOpenId() { return tokenizer == null ? -1 : tokenizer.tokenId("<think>"); }

    private Tokenizer tokenizer(String field) {
        if (tokenizer == null) {
            throw invalid(field + ": model " + model + " has no tokenizer.json, so text and chat input cannot be "
                    + "tokenized; send token_ids instead");
        }
        return tokenizer;
    }

    /** The chat in the M1 prompt format, generation prompt included. */
    static String render(ChatInput chat, String field) {
        return ChatTemplate.render(messages(chat, field), tools(chat, field), true);
    }

    static List<ChatMessage> messages(ChatInput chat, String field) {
        if (chat.getMessagesCount() == 0) throw invalid(field + ".messages: at least one message");
        Map<String, String> callNames = new HashMap<>(); // tool call id -> tool name, to name tool results
        List<ChatMessage> out = new ArrayList<>();
        for (int i = 0; i < chat.getMessagesCount(); i++) {
            io.lightmesh.proto.v1.ChatMessage m = chat.getMessages(i);
            String where = field + ".messages[" + i + "]";
            out.add(switch (m.getRole()) {
                case ROLE_SYSTEM -> ChatMessage.system(m.getContent());
                case ROLE_USER -> ChatMessage.user(m.getContent());
                case ROLE_ASSISTANT -> {
                    List<ToolCall> calls = new ArrayList<>();
                    for (int j = 0; j < m.getToolCallsCount(); j++) {
                        io.lightmesh.proto.v1.ToolCall c = m.getToolCalls(j);
                        if (c.getName().isEmpty()) throw invalid(where + ".tool_calls[" + j + "].name must be set");
                        calls.add(new ToolCall(c.getName(), c.getArgumentsJson()));
                        if (!c.getId().isEmpty()) callNames.put(c.getId(), c.getName());
                    }
                    yield ChatMessage.assistant(m.getContent(), calls);
                }
                case ROLE_TOOL -> {
                    String name = !m.getName().isEmpty() ? m.getName() : callNames.get(m.getToolCallId());
                    if (name == null || name.isEmpty()) {
                        throw invalid(where + ": a tool result needs name, or a tool_call_id of an earlier assistant tool call");
                    }
                    yield ChatMessage.tool(name, m.getContent());
                }
                default -> throw invalid(where + ".role must be set (system, user, assistant or tool)");
            });
        }
        return out;
    }

    static List<ToolDefinition> tools(ChatInput chat, String field) {
        List<ToolDefinition> out = new ArrayList<>();
        for (int i = 0; i < chat.getToolsCount(); i++) {
            Tool t = chat.getTools(i);
            if (t.getName().isEmpty()) throw invalid(field + ".tools[" + i + "].name must be set");
            try {
                out.add(ToolDefinition.of(t.getName(), t.getDescription().isEmpty() ? null : t.getDescription(),
                        t.getParametersJson().isBlank() ? null : t.getParametersJson()));
            } catch (IllegalArgumentException e) {
                throw invalid(field + ".tools[" + i + "].parameters_json: " + e.getMessage());
            }
        }
        return out;
    }

    static StatusRuntimeException invalid(String m) { return Status.INVALID_ARGUMENT.withDescription(m).asRuntimeException(); }
}
