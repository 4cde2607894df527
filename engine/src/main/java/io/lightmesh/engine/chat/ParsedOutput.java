package io.lightmesh.engine.chat;

import java.util.List;

/**
 * A model output split into its parts.
 *
 * @param reasoning          the text inside {@code <think>...</think>}, trimmed; "" when there was none
 * @param content            the answer outside the thinking and the tool-call blocks, trimmed
 * @param toolCalls          the calls, in order
 * @param malformedToolCalls lines of a tool-call block that could not be read as a call
 */
public record ParsedOutput(String reasoning, String content, List<ToolCall> toolCalls,
                           List<MalformedToolCall> malformedToolCalls) {
    public ParsedOutput {
        toolCalls = List.copyOf(toolCalls);
        malformedToolCalls = List.copyOf(malformedToolCalls);
    }
}
