package io.lightmesh.client;

import java.util.List;
import java.util.Objects;

/**
 * One turn of a conversation. Build them with the factories: {@link #system}, {@link #user}, {@link #assistant},
 * {@link #toolResult}.
 *
 * @param role       who wrote it
 * @param content    the text of the turn (for {@link Role#TOOL}: the tool's result)
 * @param name       for {@link Role#TOOL}: the tool that produced the result; optional otherwise ({@code ""})
 * @param toolCalls  for {@link Role#ASSISTANT}: the calls the model made in that turn, replayed into the prompt
 * @param toolCallId for {@link Role#TOOL}: the {@link ToolCall#id()} this result answers
 * @param reasoning  for {@link Role#ASSISTANT}: that turn's reasoning; kept for the caller, not replayed to the model
 */
public record ChatMessage(Role role, String content, String name, List<ToolCall> toolCalls, String toolCallId,
                          String reasoning) {
    /** Requires a role; turns nulls into {@code ""} and an empty list. */
    public ChatMessage {
        Objects.requireNonNull(role, "role");
        content = content == null ? "" : content;
        name = name == null ? "" : name;
        toolCalls = toolCalls == null ? List.of() : List.copyOf(toolCalls);
        toolCallId = toolCallId == null ? "" : toolCallId;
        reasoning = reasoning == null ? "" : reasoning;
    }

    /** Instructions for the assistant. */
    public static ChatMessage system(String content) { return new ChatMessage(Role.SYSTEM, content, "", List.of(), "", ""); }

    /** The user's turn. */
    public static ChatMessage user(String content) { return new ChatMessage(Role.USER, content, "", List.of(), "", ""); }

    /** A previous answer of the model. */
    public static ChatMessage assistant(String content) { return new ChatMessage(Role.ASSISTANT, content, "", List.of(), "", ""); }

    /** A previous answer of the model that called tools; send it back before the {@link #toolResult results}. */
    public static ChatMessage assistant(String content, List<ToolCall> toolCalls) {
        return new ChatMessage(Role.ASSISTANT, content, "", toolCalls, "", "");
    }

    /** The model's previous turn, as returned in a {@link Completion} (answer text, tool calls and reasoning). */
    public static ChatMessage assistant(Completion answer) {
        return new ChatMessage(Role.ASSISTANT, answer.text(), "", answer.toolCalls(), "", answer.reasoning());
    }

    /**
     * The result of a tool call.
     *
     * @param call    the call this answers (its id and name are used)
     * @param content the tool's result, usually JSON text
     */
    public static ChatMessage toolResult(ToolCall call, String content) {
        return new ChatMessage(Role.TOOL, content, call.name(), List.of(), call.id(), "");
    }

    /** The result of a tool call, by the call's id and the tool's name. */
    public static ChatMessage toolResult(String toolCallId, String name, String content) {
        return new ChatMessage(Role.TOOL, content, name, List.of(), toolCallId, "");
    }
}
