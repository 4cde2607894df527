package io.lightmesh.engine.chat;

import java.util.ArrayList;
import java.util.List;

/**
 * Parses MiniMax-M1 output as it is generated. Fed text deltas of any size, it emits reasoning text, answer text
 * and complete tool calls, and never lets part of a tag reach the text: a tail that could still become
 * {@code </think>} or {@code <tool_calls>} is held until the next delta settles it. Both texts are trimmed as the
 * batch {@link OutputParser} trims them: leading whitespace is dropped and trailing whitespace held until more
 * text follows it. Tags are recognized where the format puts them: {@code <think>} only at the start, then
 * {@code </think>}, then any number of {@code <tool_calls>...</tool_calls>} blocks within the answer.
 * Not thread-safe: one per sequence.
 */
public final class StreamingOutputParser {
    static final String THINK_OPEN = "<think>";
    static final String THINK_CLOSE = "</think>";
    static final String TOOLS_OPEN = "<tool_calls>";
    static final String TOOLS_CLOSE = "</tool_calls>";

    private enum State { START, REASONING, CONTENT, TOOLS }

    private State state;
    private final StringBuilder buffer = new StringBuilder(); // text received but not yet emitted
    private final Trimmer reasoning = new Trimmer();
    private final Trimmer content = new Trimmer();
    private final ToolCallReader tools = new ToolCallReader();
    private final List<OutputDelta> all = new ArrayList<>();
    private boolean finished;

    /** @param startsInReasoning the prompt ended with {@code <think>}, so the output opens inside thinking */
    public StreamingOutputParser(boolean startsInReasoning) {
        state = startsInReasoning ? State.REASONING : State.START;
    }

    /** Feeds the next piece of output; returns what it completes (possibly nothing). */
    public List<OutputDelta> accept(String delta) {
        if (finished) throw new IllegalStateException("finish() was called");
        buffer.append(delta);
        List<OutputDelta> out = new ArrayList<>();
        while (step(out)) { }
        all.addAll(out);
        return out;
    }

    /** Ends the output: held text is released and an unterminated tool-call block is read as it stands. */
    public List<OutputDelta> finish() {
        if (finished) return List.of();
        finished = true;
        List<OutputDelta> out = new ArrayList<>();
        String rest = buffer.toString();
        buffer.setLength(0);
        switch (state) {
            case START, CONTENT -> emit(out, content, rest, false);
            case REASONING -> emit(out, reasoning, rest, true);
            case TOOLS -> {
                tools.line(rest, out);
                tools.end(out);
            }
        }
        all.addAll(out);
        return out;
    }

    /** Everything parsed so far (the final result once {@link #finish()} has been called). */
    public ParsedOutput result() {
        return OutputParser.collect(all);
    }

    /** Consumes what the buffer settles; false when it must wait for more text. */
    private boolean step(List<OutputDelta> out) {
        switch (state) {
            case START -> {
                int i = 0;
                while (i < buffer.length() && Character.isWhitespace(buffer.charAt(i))) i++;
                int n = Math.min(buffer.length() - i, THINK_OPEN.length());
                if (!THINK_OPEN.startsWith(buffer.substring(i, i + n))) {
                    state = State.CONTENT;
                    return true;
                }
                if (n < THINK_OPEN.length()) return false;
                buffer.delete(0, i + n);
                state = State.REASONING;
                return true;
            }
            case REASONING -> {
                return untilTag(out, THINK_CLOSE, reasoning, true, State.CONTENT);
            }
            case CONTENT -> {
                return untilTag(out, TOOLS_OPEN, content, false, State.TOOLS);
            }
            case TOOLS -> {
                int nl = buffer.indexOf("\n");
                int close = buffer.indexOf(TOOLS_CLOSE);
                if (nl >= 0 && (close < 0 || nl < close)) {
                    tools.line(buffer.substring(0, nl), out);
                    buffer.delete(0, nl + 1);
                    return true;
                }
                if (close >= 0) {
                    tools.line(buffer.substring(0, close), out);
                    tools.end(out);
                    buffer.delete(0, close + TOOLS_CLOSE.length());
                    state = State.CONTENT;
                    return true;
                }
                return false;
            }
        }
        return false;
    }

    /** Emits text up to {@code tag} and moves on; without the tag, emits all but a tail that may begin it. */
    private boolean untilTag(List<OutputDelta> out, String tag, Trimmer trimmer, boolean isReasoning, State next) {
        int at = buffer.indexOf(tag);
        if (at >= 0) {
            emit(out, trimmer, buffer.substring(0, at), isReasoning);
            buffer.delete(0, at + tag.length());
            state = next;
            return true;
        }
        int keep = tagPrefixAtEnd(buffer, tag);
        emit(out, trimmer, buffer.substring(0, buffer.length() - keep), isReasoning);
        buffer.delete(0, buffer.length() - keep);
        return false;
    }

    /** Length of the longest suffix of {@code s} that is a proper prefix of {@code tag}. */
    static int tagPrefixAtEnd(CharSequence s, String tag) {
        for (int k = Math.min(tag.length() - 1, s.length()); k > 0; k--) {
            boolean match = true;
            for (int j = 0; j < k && match; j++) match = s.charAt(s.length() - k + j) == tag.charAt(j);
            if (match) return k;
        }
        return 0;
    }

    private static void emit(List<OutputDelta> out, Trimmer trimmer, String text, boolean isReasoning) {
        String t = trimmer.push(text);
        if (t.isEmpty()) return;
        out.add(isReasoning ? new OutputDelta.Reasoning(t) : new OutputDelta.Content(t));
    }

    /** Trims a text that arrives in pieces: drops leading whitespace, holds trailing whitespace until followed. */
    private static final class Trimmer {
        private boolean started;
        private final StringBuilder heldSpace = new StringBuilder();

        String push(String s) {
            int from = 0;
            if (!started) {
                while (from < s.length() && Character.isWhitespace(s.charAt(from))) from++;
                if (from == s.length()) return "";
                started = true;
            }
            int end = s.length();
            while (end > from && Character.isWhitespace(s.charAt(end - 1))) end--;
            if (end == from) {
                heldSpace.append(s, from, s.length());
                return "";
            }
            String out = heldSpace + s.substring(from, end);
            heldSpace.setLength(0);
            heldSpace.append(s, end, s.length());
            return out;
        }
    }
}
