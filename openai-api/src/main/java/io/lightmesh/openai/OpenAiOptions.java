package io.lightmesh.openai;

import java.util.List;

/**
 * Settings of the OpenAI-compatible API.
 *
 * @param modelAliases              names accepted in {@code model} besides the served model's id (listed by
 *                                  {@code GET /v1/models} too)
 * @param acceptAnyModel            accept any {@code model} name (for tools that insist on their own); default false:
 *                                  an unknown name is 404 {@code model_not_found}
 * @param apiKey                    when set, requests must carry {@code Authorization: Bearer <apiKey>} (else 401)
 * @param maxBodyBytes              largest request body (default 64 MiB: M1 takes inputs of up to a million tokens)
 * @param defaultCompletionMaxTokens {@code max_tokens} of {@code /v1/completions} when unset (OpenAI's default, 16);
 *                                  chat completions without a limit use the server's default instead
 */
public record OpenAiOptions(List<String> modelAliases, boolean acceptAnyModel, String apiKey, long maxBodyBytes,
                            int defaultCompletionMaxTokens) {
    /** Copies the aliases and checks the limits. */
    public OpenAiOptions {
        modelAliases = List.copyOf(modelAliases);
        apiKey = apiKey == null || apiKey.isEmpty() ? null : apiKey;
        if (maxBodyBytes < 1024) throw new IllegalArgumentException("maxBodyBytes too small");
        if (defaultCompletionMaxTokens < 1) throw new IllegalArgumentException("defaultCompletionMaxTokens must be >= 1");
    }

    /** No aliases, strict model names, no API key, 64 MiB bodies, 16 tokens for text completions. */
    public static OpenAiOptions defaults() { return new OpenAiOptions(List.of(), false, null, 64L << 20, 16); }

    /** These options with other model aliases. */
    public OpenAiOptions withModelAliases(List<String> aliases) {
        return new OpenAiOptions(aliases, acceptAnyModel, apiKey, maxBodyBytes, defaultCompletionMaxTokens);
    }

    /** These options accepting any model name, or not. */
    public OpenAiOptions withAcceptAnyModel(boolean any) {
        return new OpenAiOptions(modelAliases, any, apiKey, maxBodyBytes, defaultCompletionMaxTokens);
    }

    /** These options requiring this API key (null: none). */
    public OpenAiOptions withApiKey(String key) {
        return new OpenAiOptions(modelAliases, acceptAnyModel, key, maxBodyBytes, defaultCompletionMaxTokens);
    }

    /** These options with another body limit. */
    public OpenAiOptions withMaxBodyBytes(long bytes) {
        return new OpenAiOptions(modelAliases, acceptAnyModel, apiKey, bytes, defaultCompletionMaxTokens);
    }
}
