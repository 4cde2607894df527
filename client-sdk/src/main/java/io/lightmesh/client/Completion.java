package io.lightmesh.client;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.TreeMap;

/**
 * A whole answer.
 *
 * <p>For chat requests (and any request with {@link GenerationRequest.Builder#parseOutput(boolean)}) the server splits
 * the model's output: {@link #reasoning()} holds what was inside {@code <think>...</think>}, {@link #toolCalls()} the
 * parsed {@code <tool_calls>} block, and {@link #text()} only the answer. Otherwise {@link #text()} is the raw output.
 * With several choices ({@link GenerationRequest.Builder#n(int)}) the fields hold choice 0 and {@link #choices()} all.
 *
 * @param requestId      the request's id (the caller's, or one the client assigned)
 * @param text           the answer text
 * @param reasoning      the reasoning, {@code ""} when none or not parsed
 * @param toolCalls      the tool calls, in order; empty when none
 * @param tokenIds       the generated token ids, when {@link GenerationRequest.Builder#returnTokenIds(boolean)} was set
 * @param finishReason   why generation ended
 * @param matchedStop    the stop string that ended generation, {@code ""} when none did
 * @param usage          token counts (of all choices)
 * @param stats          where the time went inside the mesh
 * @param logprobs       one per generated token, when {@link GenerationRequest.Builder#logprobs(int)} was set
 * @param promptTokenIds the prompt as the model saw it, when token ids were requested
 * @param promptLogprobs the prompt tokens' log-probabilities (from the second), when
 *                       {@link GenerationRequest.Builder#promptLogprobs(int)} was set
 * @param choices        every choice, index order, when more than one was asked for; empty otherwise
 */
public record Completion(String requestId, String text, String reasoning, List<ToolCall> toolCalls, List<Integer> tokenIds,
                         FinishReason finishReason, String matchedStop, Usage usage, RequestStats stats,
                         List<TokenLogprob> logprobs, List<Integer> promptTokenIds, List<TokenLogprob> promptLogprobs,
                         List<Choice> choices) {
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
        logprobs = logprobs == null ? List.of() : List.copyOf(logprobs);
        promptTokenIds = promptTokenIds == null ? List.of() : List.copyOf(promptTokenIds);
        promptLogprobs = promptLogprobs == null ? List.of() : List.copyOf(promptLogprobs);
        choices = choices == null ? List.of() : List.copyOf(choices);
    }

    /** A one-choice answer without log-probabilities. */
    public Completion(String requestId, String text, String reasoning, List<ToolCall> toolCalls, List<Integer> tokenIds,
                      FinishReason finishReason, String matchedStop, Usage usage, RequestStats stats) {
        this(requestId, text, reasoning, toolCalls, tokenIds, finishReason, matchedStop, usage, stats, List.of(), List.of(), List.of(), List.of());
    }

    /** Whether the model called tools: answer them with {@link ChatMessage#toolResult} and ask again. */
    public boolean hasToolCalls() { return !toolCalls.isEmpty(); }

    /**
     * Folds the deltas of a whole stream into the answer they make up (choice by choice when there are several).
     *
     * @throws IllegalArgumentException when the last delta is not {@link Delta#isLast() the last one of a stream}
     */
    public static Completion of(List<Delta> deltas) {
        if (deltas.isEmpty() || !deltas.getLast().isLast()) {
            throw new IllegalArgumentException("the stream did not finish: its last delta has no finish reason");
        }
        TreeMap<Integer, Fold> folds = new TreeMap<>();
        List<Integer> promptIds = new ArrayList<>();
        List<TokenLogprob> promptLps = new ArrayList<>();
        String requestId = "";
        for (Delta d : deltas) {
            requestId = d.requestId();
            folds.computeIfAbsent(d.choiceIndex(), Fold::new).add(d);
            promptIds.addAll(d.promptTokenIds());
            promptLps.addAll(d.promptLogprobs());
        }
        Delta last = deltas.getLast();
        List<Choice> all = folds.values().stream().map(Fold::choice).toList();
        Choice first = all.getFirst();
        return new Completion(requestId, first.text(), first.reasoning(), first.toolCalls(), first.tokenIds(), first.finishReason(),
                first.matchedStop(), last.usage(), last.stats(), first.logprobs(), promptIds, promptLps, all.size() > 1 ? all : List.of());
    }

    /** One choice's deltas, folded. */
    private static final class Fold {
        final int index;
        final StringBuilder text = new StringBuilder(), reasoning = new StringBuilder();
        final List<ToolCall> calls = new ArrayList<>();
        final List<Integer> ids = new ArrayList<>();
        final List<TokenLogprob> lps = new ArrayList<>();
        FinishReason finish;
        String stop = "";

        Fold(int index) { this.index = index; }

        void add(Delta d) {
            text.append(d.text());
            reasoning.append(d.reasoning());
            calls.addAll(d.toolCalls());
            ids.addAll(d.tokenIds());
            lps.addAll(d.logprobs());
            if (d.endsChoice()) { finish = d.finishReason(); stop = d.matchedStop(); }
        }

        Choice choice() {
            return new Choice(index, text.toString(), reasoning.toString(), calls, ids, lps, finish == null ? FinishReason.STOP : finish,
                    stop, ids.size(), 0);
        }
    }
}
