package io.lightmesh.client;

/** Why generation ended. */
public enum FinishReason {
    /** The model ended its turn, or the output matched a stop string ({@link Completion#matchedStop()} says which). */
    STOP,
    /** The token limit ({@link GenerationRequest.Builder#maxTokens(int)} or the server's default) was reached. */
    LENGTH,
    /** The model ended its turn with tool calls ({@link Completion#toolCalls()}). */
    TOOL_CALLS,
    /** The request was cancelled or its deadline passed. */
    CANCELLED
}
