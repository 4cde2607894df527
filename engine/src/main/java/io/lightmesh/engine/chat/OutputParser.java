package io.lightmesh.engine.chat;

import java.util.ArrayList;
import java.util.List;

/**
 * Parses a complete MiniMax-M1 output: {@code <think>\n...\n</think>\n} reasoning, then the answer, with tool
 * calls as {@code <tool_calls>\n{"name": ..., "arguments": {...}}\n...</tool_calls>}. It runs
 * {@link StreamingOutputParser} over the whole text, so streamed and batch results agree by construction.
 */
public final class OutputParser {
    private OutputParser() {}

    /**
     * Parses {@code output}, deciding from the text whether it starts inside thinking (the prompt ended with
     * {@code <think>}): it does when a {@code </think>} comes before any {@code <think>}.
     */
    public static ParsedOutput parse(String output) {
        int close = output.indexOf(StreamingOutputParser.THINK_CLOSE);
        int open = output.indexOf(StreamingOutputParser.THINK_OPEN);
        return parse(output, close >= 0 && (open < 0 || open > close));
    }

    /** Parses {@code output}; with {@code startsInReasoning}, text before {@code </think>} is reasoning. */
    public static ParsedOutput parse(String output, boolean startsInReasoning) {
        StreamingOutputParser p = new StreamingOutputParser(startsInReasoning);
        List<OutputDelta> deltas = new ArrayList<>(p.accept(output));
        deltas.addAll(p.finish());
        return collect(deltas);
    }

    /** Folds deltas into the parts they make up. */
    public static ParsedOutput collect(List<OutputDelta> deltas) {
        StringBuilder reasoning = new StringBuilder(), content = new StringBuilder();
        List<ToolCall> calls = new ArrayList<>();
        List<MalformedToolCall> malformed = new ArrayList<>();
        for (OutputDelta d : deltas) {
            switch (d) {
                case OutputDelta.Reasoning r -> reasoning.append(r.text());
                case OutputDelta.Content c -> content.append(c.text());
                case OutputDelta.Tool t -> calls.add(t.call());
                case OutputDelta.Malformed m -> malformed.add(m.malformed());
            }
        }
        return new ParsedOutput(reasoning.toString(), content.toString(), calls, malformed);
    }
}
