package io.lightmesh.client;

import java.util.List;
import java.util.Objects;

/**
 * A whole answer.
 *
 * <p>For chat requests (and any request with {@link GenerationRequest.Builder#parseOutput(boolean)}) the server splits
 * the model's output: {@link #reasoning()} holds what was inside {@code <think>...</think>}, {@link #toolCalls()} the
 * parsed {@code <tool_calls>} block, and {@link #text()} only the answer. Otherwise {@link #text()} is the raw output.
 *
 * @param requestId    the request's id (the caller's, or one the client assigned)
 * @param text         the answer text
 * @param reasoning    the reasoning, {@code ""} when none or not parsed
 * @param toolCalls    the tool calls, in order; empty when none
 * @param tokenIds     the generated token ids, when {@link GenerationRequest.Builder#returnTokenIds(boolean)} was set
 * @param finishReason why generation ended
 * @param matchedStop  the stop string that ended generation, {@code ""} when none did
 * @param usage        token counts
 * @param stats        where the time went inside the mesh
 */
public record Completion(String requestId, String text, String reasoning, List<ToolCall> toolCalls, List<Integer> tokenIds,
                         FinishReason finishReason, String matchedStop, Usage usage, RequestStats stats) {
    /** Turns nulls into empty values. */
    public Completion {
        requestId = Objects.requireNonNullElse(requestId, "");
        text = Objects.requireNonNullElse(text, "");
        reasoning = Objects.requireNonNullElse(reasoning, "");
        toolCalls = toolCalls == null ? List.of() : List.copyOf(toolCalls);
        tokenIds = tokenIds == null ? List.of() : List.copyOf(tokenIds);
        Objects.requireNonNull(finishReason, "finishReason");
        matchedStop = Objects.requireNonNullElse(matchedStop, "");
        usage = Objects.requireNonNullElse(usage, Usage.NONE);
        stats = Objects.requireNonNullElse(stats, RequestStats.NONE);
    }

    /** Whether the model called tools: answer them with {@link ChatMessage#toolResult} and ask again. */
    public boolean hasToolCalls() { return !toolCalls.isEmpty(); }

    /**
     * Folds the deltas of a whole stream into the answer they make up.
     *
     * @throws IllegalArgumentException when the last delta is not {@link Delta#isLast() the last one of a stream}
     */
    public static Completion of(List<Delta> deltas) {
        StringBuilder text = new StringBuilder();
        StringBuilder reasoning = new StringBuilder();
        List<ToolCall> calls = new java.util.ArrayList<>();
        List<Integer> ids = new java.util.ArrayList<>();
        String requestId = "";
        for (Delta d : deltas) {
            requestId = d.requestId();
            text.append(d.text());
            reasoning.append(d.reasoning());
            calls.addAll(d.toolCalls());
            ids.addAll(d.tokenIds());
        }
        if (deltas.isEmpty() || !deltas.getLast().isLast()) {
            throw new IllegalArgumentException("the stream did not finish: its last delta has no finish reason");
        }
        Delta last = deltas.getLast();
        return new Completion(requestId, text.toString(), reasoning.toString(), calls, ids, last.finishReason(),
                last.matchedStop(), last.usage(), last.stats());
    }
}
