package io.lightmesh.router;

/**
 * Bounds on what one request may ask of the mesh, each a dimension that costs memory or time: checked by
 * {@link RequestValidator} before a request is admitted, a request over one answered INVALID_ARGUMENT naming the
 * limit and its configuration key (the OpenAI API turns that into a 400). The prompt's token count is bounded by
 * {@link RouterCore.Settings#maxPromptTokens()} ({@code lightmesh.max-prompt-tokens}); the request's bytes by the gRPC
 * server's inbound message size and the OpenAI API's body limit.
 *
 * @param maxNewTokens   {@code sampling.max_new_tokens} at most ({@code lightmesh.max-new-tokens}): each generated
 *                       token holds a decode slot and its state for one step
 * @param maxMessages    chat messages at most ({@code lightmesh.max-messages})
 * @param maxTools       tools offered in one chat at most ({@code lightmesh.max-tools})
 * @param maxStops       stop strings at most ({@code lightmesh.max-stop-strings}): each is matched after every token
 * @param maxStopChars   characters of one stop string at most ({@code lightmesh.max-stop-chars})
 * @param maxIdChars     characters of {@code request_id} and {@code conversation_id} at most (a Kafka key, a log field)
 */
public record RequestLimits(int maxNewTokens, int maxMessages, int maxTools, int maxStops, int maxStopChars, int maxIdChars) {
    /** Room for M1's 80k thinking budget plus an answer. */
    public static final int DEFAULT_MAX_NEW_TOKENS = 131_072;
    public static final int DEFAULT_MAX_MESSAGES = 4096;
    /** OpenAI's own limit on tools per request. */
    public static final int DEFAULT_MAX_TOOLS = 128;
    public static final int DEFAULT_MAX_STOPS = 16;
    public static final int DEFAULT_MAX_STOP_CHARS = 1024;
    public static final int DEFAULT_MAX_ID_CHARS = 256;

    public RequestLimits {
        if (maxNewTokens < 1 || maxMessages < 1 || maxTools < 0 || maxStops < 0 || maxStopChars < 1 || maxIdChars < 1) {
            throw new IllegalArgumentException("request limits must be positive (tools and stop strings may be 0): " + this);
        }
    }

    /** The documented defaults. */
    public static RequestLimits defaults() {
        return new RequestLimits(DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_MESSAGES, DEFAULT_MAX_TOOLS, DEFAULT_MAX_STOPS,
                DEFAULT_MAX_STOP_CHARS, DEFAULT_MAX_ID_CHARS);
    }
}
