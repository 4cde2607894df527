package io.lightmesh.engine.chat;

/** A piece of parsed output, as {@link StreamingOutputParser} emits it. */
public sealed interface OutputDelta {
    /** More reasoning text. */
    record Reasoning(String text) implements OutputDelta {}

    /** More answer text. */
    record Content(String text) implements OutputDelta {}

    /** A tool call, emitted once its line is complete. */
    record Tool(ToolCall call) implements OutputDelta {}

    /** A line of a tool-call block that is not a call. */
    record Malformed(MalformedToolCall malformed) implements OutputDelta {}
}
