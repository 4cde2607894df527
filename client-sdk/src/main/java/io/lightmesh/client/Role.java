package io.lightmesh.client;

/** Who wrote a {@link ChatMessage}. */
public enum Role {
    /** Instructions for the assistant (M1's {@code system ai_setting=assistant} turn). */
    SYSTEM,
    /** The user's turn. */
    USER,
    /** A previous answer of the model, possibly with tool calls. */
    ASSISTANT,
    /** The result of a tool call, answering {@link ChatMessage#toolCallId()}. */
    TOOL
}
