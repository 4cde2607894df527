package io.lightmesh.client;

import java.util.List;
import java.util.Objects;

/**
 * One piece of a streamed answer. Concatenating {@link #text()} (and {@link #reasoning()}) over a stream gives the
 * whole answer (and reasoning); {@link Completion#of} does it. The last delta of a stream carries the
 * {@link #finishReason()}, usage and stats; a delta may carry only token ids, while their bytes do not yet form whole
 * characters.
 *
 * @param requestId    the request's id
 * @param text         new answer text ({@code ""} when none)
 * @param reasoning    new reasoning text, for parsed output ({@code ""} when none)
 * @param toolCalls    tool calls completed since the previous delta, each sent once and whole
 * @param tokenIds     token ids produced since the previous delta, when requested
 * @param finishReason on the last delta only: why generation ended; {@code null} before
 * @param matchedStop  on the last delta: the stop string that ended generation, if one did
 * @param usage        on the last delta: token counts; {@code null} before
 * @param stats        on the last delta: where the time went; {@code null} before
 */
public record Delta(String requestId, String text, String reasoning, List<ToolCall> toolCalls, List<Integer> tokenIds,
                    FinishReason finishReason, String matchedStop, Usage usage, RequestStats stats) {
    /** Turns null strings and lists into empty ones. */
    public Delta {
        requestId = Objects.requireNonNullElse(requestId, "");
        text = Objects.requireNonNullElse(text, "");
        reasoning = Objects.requireNonNullElse(reasoning, "");
        toolCalls = toolCalls == null ? List.of() : List.copyOf(toolCalls);
        tokenIds = tokenIds == null ? List.of() : List.copyOf(tokenIds);
        matchedStop = Objects.requireNonNullElse(matchedStop, "");
    }

    /** Whether this is the last delta of its stream (it has a finish reason). */
    public boolean isLast() { return finishReason != null; }
}
