package io.lightmesh.client;

/**
 * Thinking-budget presets matching the two MiniMax-M1 releases, which were trained for 40K- and 80K-token outputs.
 * A budget caps the tokens of the reasoning ({@code <think>}) block: when it is spent the server closes the block
 * itself and the model answers. Any other budget can be set with
 * {@link GenerationRequest.Builder#maxThinkingTokens(int)}.
 */
public enum ThinkingBudget {
    /** 40,000 reasoning tokens, as MiniMax-M1-40k. */
    M1_40K(40_000),
    /** 80,000 reasoning tokens, as MiniMax-M1-80k. */
    M1_80K(80_000);

    private final int tokens;

    ThinkingBudget(int tokens) { this.tokens = tokens; }

    /** The budget in tokens. */
    public int tokens() { return tokens; }
}
