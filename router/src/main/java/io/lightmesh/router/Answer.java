package io.lightmesh.router;

import io.lightmesh.engine.chat.OutputDelta;
import io.lightmesh.engine.chat.StreamingOutputParser;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.ToolCall;

import java.util.ArrayList;
import java.util.List;

/**
 * One request's output as its client sees it, folded from the decode worker's raw text deltas. The engine's
 * {@link StreamingOutputParser} always runs (a turn that made tool calls finishes with TOOL_CALLS); with
 * parse_output its split is what the client gets: reasoning apart from the answer (never mixed into it), tool
 * calls whole, once each. Without parse_output the client gets the raw text, tags included. Lines of a tool-call
 * block that are not calls go back into the answer text, so nothing the model wrote is lost. Not thread-safe.
 */
final class Answer {
    /** What one decode event adds for the client. */
    record Delta(String text, String reasoning, List<ToolCall> toolCalls) {
        boolean isEmpty() { return text.isEmpty() && reasoning.isEmpty() && toolCalls.isEmpty(); }
    }

    private final String requestId;
    private final boolean parse;
    private final StreamingOutputParser parser;
    private final StringBuilder text = new StringBuilder(), reasoning = new StringBuilder();
    private final List<ToolCall> toolCalls = new ArrayList<>();

    /** @param startsInReasoning the prompt ended with {@code <think>}: the output opens inside the reasoning */
    Answer(String requestId, boolean parse, boolean startsInReasoning) {
        this.requestId = requestId;
        this.parse = parse;
        this.parser = new StreamingOutputParser(startsInReasoning);
    }

    /** Folds the next raw text; {@code last} ends the output (held text is released). */
    Delta accept(String raw, boolean last) {
        List<OutputDelta> parts = new ArrayList<>(raw.isEmpty() ? List.of() : parser.accept(raw));
        if (last) parts.addAll(parser.finish());
        StringBuilder t = new StringBuilder(), r = new StringBuilder();
        List<ToolCall> calls = new ArrayList<>();
        for (OutputDelta d : parts) {
            switch (d) {
                case OutputDelta.Content c -> t.append(c.text());
                case OutputDelta.Reasoning x -> r.append(x.text());
                case OutputDelta.Malformed m -> t.append(m.malformed().text());
                case OutputDelta.Tool c -> {
                    int index = toolCalls.size() + calls.size();
                    calls.add(ToolCall.newBuilder().setId("call_" + requestId + "_" + index).setIndex(index)
                            .setName(c.call().name()).setArgumentsJson(c.call().arguments()).build());
                }
            }
        }
        toolCalls.addAll(calls);
        if (!parse) {
            text.append(raw);
            return new Delta(raw, "", List.of());
        }
        text.append(t);
        reasoning.append(r);
        return new Delta(t.toString(), r.toString(), calls);
    }

    /** The reason to report: a natural stop after tool calls is TOOL_CALLS. */
    FinishReason finishReason(FinishReason decoded) {
        return decoded == FinishReason.FINISH_REASON_STOP && !toolCalls.isEmpty() ? FinishReason.FINISH_REASON_TOOL_CALLS : decoded;
    }

    String text() { return text.toString(); }
    String reasoning() { return reasoning.toString(); }
    List<ToolCall> toolCalls() { return toolCalls; }
}
