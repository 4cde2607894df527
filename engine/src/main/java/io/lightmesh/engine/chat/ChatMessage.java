package io.lightmesh.engine.chat;

import java.util.List;
import java.util.Objects;

/**
 * One turn of a conversation. An assistant turn may carry the tool calls it made; a tool turn carries the
 * result of one call and the name of the tool that produced it.
 *
 * @param toolCalls calls made by an assistant turn; empty for every other role
 * @param toolName  the tool whose result a tool turn holds; null for every other role
 */
public record ChatMessage(Role role, String content, List<ToolCall> toolCalls, String toolName) {
    public enum Role { SYSTEM, USER, ASSISTANT, TOOL }

    public ChatMessage {
        Objects.requireNonNull(role, "role");
        content = content == null ? "" : content;
        toolCalls = toolCalls == null ? List.of() : List.copyOf(toolCalls);
        if (!toolCalls.isEmpty() && role != Role.ASSISTANT) {
            throw new IllegalArgumentException("only assistant messages carry tool calls, not " + role);
        }
        if (role == Role.TOOL && (toolName == null || toolName.isEmpty())) {
            throw new IllegalArgumentException("a tool message needs the name of its tool");
        }
        if (role != Role.TOOL && toolName != null) {
            throw new IllegalArgumentException("only tool messages carry a tool name, not " + role);
        }
    }

    public static ChatMessage system(String content) {
        return new ChatMessage(Role.SYSTEM, content, List.of(), null);
    }

    public static ChatMessage user(String content) {
        return new ChatMessage(Role.USER, content, List.of(), null);
    }

    public static ChatMessage assistant(String content) {
        return new ChatMessage(Role.ASSISTANT, content, List.of(), null);
    }

    public static ChatMessage assistant(String content, List<ToolCall> toolCalls) {
        return new ChatMessage(Role.ASSISTANT, content, toolCalls, null);
    }

    public static ChatMessage tool(String toolName, String result) {
        return new ChatMessage(Role.TOOL, result, List.of(), toolName);
    }
}
