package io.lightmesh.client;

import java.util.List;
import java.util.Objects;

/**
 * One piece of a streamed answer. Concatenating {@link #text()} (and {@link #reasoning()}) over a stream gives the
 * whole answer (and reasoning); {@link Completion#of} does it. The last delta of a stream carries the
 * {@link #finishReason()}, usage and stats; a delta may carry only token ids (or log-probabilities), while their bytes
 * do not yet form whole characters. With several choices ({@link GenerationRequest.Builder#n(int)}) each delta belongs
 * to one ({@link #choiceIndex()}), each choice's last delta has its finish reason ({@link #endsChoice()}), and usage
 * and stats come with the stream's last delta.
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
 * @param choiceIndex    the choice this delta belongs to (0 with one choice)
 * @param logprobs       log-probabilities of the tokens produced since the previous delta of this choice, when requested
 * @param promptTokenIds on the stream's first delta, with token ids requested: the prompt as the model saw it
 * @param promptLogprobs on the stream's first delta, when requested: the prompt tokens' log-probabilities (second on)
 */
public record Delta(String requestId, String text, String reasoning, List<ToolCall> toolCalls, List<Integer> tokenIds,
                    FinishReason finishReason, String matchedStop, Usage usage, RequestStats stats, int choiceIndex,
                    List<TokenLogprob> logprobs, List<Integer> promptTokenIds, List<TokenLogprob> promptLogprobs) {
    /** Turns null strings and lists into empty ones. */
    public Delta {
        requestId = Objects.requireNonNullElse(requestId, "");
        text = Objects.requireNonNullElse(text, "");
        reasoning = Objects.requireNonNullElse(reasoning, "");
        toolCalls = toolCalls == null ? List.of() : List.copyOf(toolCalls);
        tokenIds = tokenIds == null ? List.of() : List.copyOf(tokenIds);
        matchedStop = Objects.requireNonNullElse(matchedStop, "");
        logprobs = logprobs == null ? List.of() : List.copyOf(logprobs);
        promptTokenIds = promptTokenIds == null ? List.of() : List.copyOf(promptTokenIds);
        promptLogprobs = promptLogprobs == null ? List.of() : List.copyOf(promptLogprobs);
    }

    /** A delta of a one-choice stream without log-probabilities. */
    public Delta(String requestId, String text, String reasoning, List<ToolCall> toolCalls, List<Integer> tokenIds,
                 FinishReason finishReason, String matchedStop, Usage usage, RequestStats stats) {
        this(requestId, text, reasoning, toolCalls, tokenIds, finishReason, matchedStop, usage, stats, 0, List.of(), List.of(), List.of());
    }

    /**
     * Whether this is the last delta of its stream: it has a finish reason and the usage (with several choices, the
     * other choices' ends have a finish reason only).
     */
    public boolean isLast() { return finishReason != null && usage != null; }

    /** Whether this delta ends its choice (it has the choice's finish reason). */
    public boolean endsChoice() { return finishReason != null; }
}
