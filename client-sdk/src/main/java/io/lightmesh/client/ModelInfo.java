package io.lightmesh.client;

/**
 * The model a server runs and the limits it applies.
 *
 * @param modelId             the model's name, as used in the OpenAI-compatible API's {@code model} field
 * @param modelType           the config dialect ({@code "minimax_m1"} or {@code "minimax"})
 * @param vocabSize           tokens in the vocabulary
 * @param numLayers           decoder layers
 * @param numExperts          experts per MoE layer
 * @param topK                experts chosen per token
 * @param maxPositions        longest sequence (prompt + output) the model accepts
 * @param maxPromptTokens     longest prompt the server admits
 * @param defaultMaxNewTokens tokens generated when a request sets no limit
 * @param parameterCount      parameters in the checkpoint
 * @param activeParameters    parameters read per token
 * @param servingMode         {@code "mesh"} (router, prefill, decode, expert services) or {@code "local"} (one process)
 */
public record ModelInfo(String modelId, String modelType, int vocabSize, int numLayers, int numExperts, int topK,
                        long maxPositions, int maxPromptTokens, int defaultMaxNewTokens, long parameterCount,
                        long activeParameters, String servingMode) {}
