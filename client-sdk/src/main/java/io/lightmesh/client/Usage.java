package io.lightmesh.client;

/**
 * Token counts of one request.
 *
 * @param promptTokens     tokens of the prompt, chat template applied
 * @param completionTokens tokens generated, reasoning included
 * @param reasoningTokens  of the completion tokens, those inside the reasoning ({@code <think>}) block
 * @param totalTokens      prompt plus completion tokens
 * @param cachedTokens     of the prompt tokens, those the server restored from its prefix cache instead of computing
 */
public record Usage(int promptTokens, int completionTokens, int reasoningTokens, int totalTokens, int cachedTokens) {
    /** No tokens. */
    public static final Usage NONE = new Usage(0, 0, 0, 0, 0);

    /** Nothing cached. */
    public Usage(int promptTokens, int completionTokens, int reasoningTokens, int totalTokens) {
        this(promptTokens, completionTokens, reasoningTokens, totalTokens, 0);
    }
}
