package io.lightmesh.client;

import java.util.List;
import java.util.Objects;

/**
 * One of several answers to the same prompt ({@link GenerationRequest.Builder#n(int)} above 1); the fields mean what
 * {@link Completion}'s do, for this choice.
 *
 * @param index            which choice, from 0
 * @param completionTokens tokens this choice generated (folded from a stream: the token ids, or log-probabilities,
 *                         received, so 0 when neither was requested)
 * @param reasoningTokens  of those, the ones inside the reasoning block
 */
public record Choice(int index, String text, String reasoning, List<ToolCall> toolCalls, List<Integer> tokenIds,
                     List<TokenLogprob> logprobs, FinishReason finishReason, String matchedStop, int completionTokens,
                     int reasoningTokens) {
    public Choice {
        text = Objects.requireNonNullElse(text, "");
        reasoning = Objects.requireNonNullElse(reasoning, "");
        toolCalls = toolCalls == null ? List.of() : List.copyOf(toolCalls);
        tokenIds = tokenIds == null ? List.of() : List.copyOf(tokenIds);
        logprobs = logprobs == null ? List.of() : List.copyOf(logprobs);
        matchedStop = Objects.requireNonNullElse(matchedStop, "");
    }

    /** Whether the model called tools in this choice. */
    public boolean hasToolCalls() { return !toolCalls.isEmpty(); }
}
