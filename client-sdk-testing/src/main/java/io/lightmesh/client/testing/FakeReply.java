package io.lightmesh.client.testing;

import io.grpc.Status;
import io.lightmesh.client.FinishReason;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A scripted answer of {@link FakeLightMesh} to one generation call. Streamed, it arrives as the reasoning deltas,
 * then the text deltas, then one chunk with the tool calls, then a last chunk with the finish reason and usage.
 * When the request did not ask for parsed output, the reasoning and tool calls are written into the text the way
 * MiniMax-M1 writes them ({@code <think>\n...\n</think>\n}, {@code <tool_calls>\n{...}\n</tool_calls>}).
 *
 * <pre>{@code
 * fake.enqueue(FakeReply.text("It is sunny.").reasoning("The tool said so."));
 * fake.enqueue(FakeReply.text("").toolCall("get_weather", "{\"city\":\"Paris\"}"));
 * fake.enqueue(FakeReply.error(Status.Code.RESOURCE_EXHAUSTED, "queue full"));
 * fake.enqueue(FakeReply.text("slow").delay(Duration.ofMillis(50)).failAfter(1, Status.Code.UNAVAILABLE, "worker lost"));
 * }</pre>
 *
 * Immutable: every method returns a new reply.
 */
public final class FakeReply {
    private static final Pattern PIECES = Pattern.compile("\\s*\\S+|\\s+");

    final List<String> reasoning;
    final List<String> text;
    final List<String[]> toolCalls;     // {name, argumentsJson}
    final FinishReason finishReason;    // null: STOP, or TOOL_CALLS when there are tool calls
    final int promptTokens;             // -1: count the request's tokens with the fake tokenizer
    final int completionTokens;         // -1: one per delta
    final String matchedStop;
    final Duration delay;
    final Status.Code errorCode;        // null: no error
    final String errorMessage;
    final int failAfter;                // chunks sent before the error; -1: fail at once (when errorCode is set)
    final boolean hang;

    private FakeReply(List<String> reasoning, List<String> text, List<String[]> toolCalls, FinishReason finishReason,
                      int promptTokens, int completionTokens, String matchedStop, Duration delay, Status.Code errorCode,
                      String errorMessage, int failAfter, boolean hang) {
        this.reasoning = List.copyOf(reasoning);
        this.text = List.copyOf(text);
        this.toolCalls = List.copyOf(toolCalls);
        this.finishReason = finishReason;
        this.promptTokens = promptTokens;
        this.completionTokens = completionTokens;
        this.matchedStop = matchedStop;
        this.delay = delay;
        this.errorCode = errorCode;
        this.errorMessage = errorMessage;
        this.failAfter = failAfter;
        this.hang = hang;
    }

    private FakeReply with(List<String> reasoning, List<String> text, List<String[]> toolCalls, FinishReason finishReason,
                           int promptTokens, int completionTokens, String matchedStop, Duration delay, Status.Code errorCode,
                           String errorMessage, int failAfter) {
        return new FakeReply(reasoning, text, toolCalls, finishReason, promptTokens, completionTokens, matchedStop, delay,
                errorCode, errorMessage, failAfter, hang);
    }

    /** Splits text into word-sized pieces that concatenate back to it. */
    static List<String> pieces(String s) {
        List<String> out = new ArrayList<>();
        Matcher m = PIECES.matcher(s);
        while (m.find()) out.add(m.group());
        return out;
    }

    /** An answer with this text, streamed a word at a time. */
    public static FakeReply text(String text) {
        return new FakeReply(List.of(), pieces(Objects.requireNonNull(text)), List.of(), null, -1, -1, "", Duration.ZERO,
                null, "", -1, false);
    }

    /** An answer streamed as exactly these text deltas. */
    public static FakeReply deltas(String... textDeltas) {
        return new FakeReply(List.of(), List.of(textDeltas), List.of(), null, -1, -1, "", Duration.ZERO, null, "", -1, false);
    }

    /** A call that fails at once with this status. */
    public static FakeReply error(Status.Code code, String message) {
        return new FakeReply(List.of(), List.of(), List.of(), null, -1, -1, "", Duration.ZERO, code, message, -1, false);
    }

    /** A call that never answers: it ends only when the client cancels it or its deadline passes. */
    public static FakeReply hang() {
        return new FakeReply(List.of(), List.of(), List.of(), null, -1, -1, "", Duration.ZERO, null, "", -1, true);
    }

    /** This reply with reasoning before the answer, streamed a word at a time. */
    public FakeReply reasoning(String reasoning) {
        return with(pieces(reasoning), text, toolCalls, finishReason, promptTokens, completionTokens, matchedStop, delay,
                errorCode, errorMessage, failAfter);
    }

    /** This reply with a tool call after the answer text (finish reason then TOOL_CALLS). */
    public FakeReply toolCall(String name, String argumentsJson) {
        List<String[]> calls = new ArrayList<>(toolCalls);
        calls.add(new String[] {name, argumentsJson});
        return with(reasoning, text, calls, finishReason, promptTokens, completionTokens, matchedStop, delay, errorCode,
                errorMessage, failAfter);
    }

    /** This reply ending for this reason (default STOP, or TOOL_CALLS with tool calls). */
    public FakeReply finish(FinishReason reason) {
        return with(reasoning, text, toolCalls, reason, promptTokens, completionTokens, matchedStop, delay, errorCode,
                errorMessage, failAfter);
    }

    /** This reply ending on a stop string (finish reason STOP). */
    public FakeReply matchedStop(String stop) {
        return with(reasoning, text, toolCalls, FinishReason.STOP, promptTokens, completionTokens, stop, delay, errorCode,
                errorMessage, failAfter);
    }

    /** This reply reporting these token counts (default: the fake tokenizer's prompt count, one token per delta). */
    public FakeReply usage(int promptTokens, int completionTokens) {
        return with(reasoning, text, toolCalls, finishReason, promptTokens, completionTokens, matchedStop, delay, errorCode,
                errorMessage, failAfter);
    }

    /** This reply waiting this long before each chunk (and before a whole answer). */
    public FakeReply delay(Duration delay) {
        return with(reasoning, text, toolCalls, finishReason, promptTokens, completionTokens, matchedStop, delay, errorCode,
                errorMessage, failAfter);
    }

    /** This reply failing with this status after sending {@code chunks} chunks of its stream (a unary call fails at once). */
    public FakeReply failAfter(int chunks, Status.Code code, String message) {
        return with(reasoning, text, toolCalls, finishReason, promptTokens, completionTokens, matchedStop, delay, code,
                message, chunks);
    }
}
