package io.lightmesh.router;

import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tokenizer.Tokenizer;
import io.lightmesh.mesh.Specs;
import io.lightmesh.proto.v1.ChatInput;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.TokenizeResponse;

import java.util.concurrent.ThreadLocalRandom;

/**
 * The router's check of a request from outside, before admission: the request's size against {@link RequestLimits}
 * and the prompt limit (cheap checks first, so an oversized chat is refused before it is rendered and tokenized),
 * the prompt made into tokens ({@link Prompts}), every sampling field in range, defaults filled in. Every refusal is
 * INVALID_ARGUMENT naming the field, and for a limit its value and configuration key. Framework-free and
 * thread-safe, so it is fuzzed on its own (GenerateRequestFuzzTest).
 */
final class RequestValidator {
    private final ModelConfig config;
    private final Tokenizer tokenizer; // null: token ids only
    private final String modelId;
    private final Prompts prompts;
    private final int maxPromptTokens;
    private final int defaultMaxNewTokens;
    private final RequestLimits limits;

    RequestValidator(ModelConfig config, Tokenizer tokenizer, String modelId, int maxPromptTokens, int defaultMaxNewTokens,
                     RequestLimits limits) {
        this.config = config;
        this.tokenizer = tokenizer;
        this.modelId = modelId;
        this.prompts = new Prompts(tokenizer, modelId);
        this.maxPromptTokens = maxPromptTokens;
        this.defaultMaxNewTokens = Math.min(defaultMaxNewTokens, limits.maxNewTokens());
        this.limits = limits;
    }

    RequestLimits limits() { return limits; }

    /** The resolved spec (template applied, defaults filled in), or INVALID_ARGUMENT naming the field. */
    GenerationSpec validate(GenerateRequest r, String id) {
        checkId("request_id", r.getRequestId());
        checkId("conversation_id", r.getConversationId());
        if (r.hasChat()) checkChat(r.getChat(), "chat");
        SamplingParams s = r.getSampling();
        checkSampling(s);
        if (r.hasTokenIds() && r.getTokenIds().getIdsCount() > maxPromptTokens) throw tooManyTokens(r.getTokenIds().getIdsCount());
        int[] prompt = prompts.tokens(r);
        if (prompt.length == 0) throw invalid(r.getInputCase().name().toLowerCase() + ": the prompt has no tokens");
        if (prompt.length > maxPromptTokens) throw tooManyTokens(prompt.length);
        for (int t : prompt) if (t < 0 || t >= config.vocabSize()) throw invalid("token_ids.ids: " + t + " outside the vocabulary 0.." + (config.vocabSize() - 1));
        SamplingParams.Builder resolved = s.toBuilder();
        if (!s.hasMaxNewTokens()) resolved.setMaxNewTokens(defaultMaxNewTokens);
        if (!s.hasSeed()) resolved.setSeed(ThreadLocalRandom.current().nextLong());
        if ((long) prompt.length + resolved.getMaxNewTokens() > config.maxPositions()) {
            throw invalid("prompt + max_new_tokens exceeds max positions " + config.maxPositions());
        }
        try {
            Specs.sampling(resolved.build());
        } catch (IllegalArgumentException e) {
            throw invalid("sampling: " + e.getMessage());
        }
        GenerationSpec.Builder spec = GenerationSpec.newBuilder().setRequestId(id).setSampling(resolved)
                .setAdmittedUnixUs(System.currentTimeMillis() * 1000);
        for (int t : prompt) spec.addPromptTokens(t);
        return spec.build();
    }

    /** Tokens of a Tokenize call, under the same limits as a generation's prompt (messages, tools, tokens). */
    TokenizeResponse tokenize(TokenizeRequest r) {
        if (r.hasChat()) checkChat(r.getChat(), "chat");
        TokenizeResponse t = prompts.tokenize(r);
        if (t.getCount() > maxPromptTokens) throw tooManyTokens(t.getCount());
        return t;
    }

    private void checkSampling(SamplingParams s) {
        if (s.hasTemperature() && !(s.getTemperature() >= 0 && s.getTemperature() <= 100)) throw invalid("sampling.temperature must be in [0, 100]");
        if (s.getTopK() < 0) throw invalid("sampling.top_k must be >= 0");
        if (s.hasTopP() && !(s.getTopP() > 0 && s.getTopP() <= 1)) throw invalid("sampling.top_p must be in (0, 1]");
        if (s.hasMaxNewTokens() && s.getMaxNewTokens() < 1) throw invalid("sampling.max_new_tokens must be >= 1");
        if (s.hasMaxNewTokens() && s.getMaxNewTokens() > limits.maxNewTokens()) {
            throw overLimit("sampling.max_new_tokens is " + s.getMaxNewTokens(), limits.maxNewTokens(), "lightmesh.max-new-tokens");
        }
        if (s.getMaxThinkingTokens() < 0) throw invalid("sampling.max_thinking_tokens must be >= 0");
        if (s.getStopCount() > limits.maxStops()) {
            throw overLimit("sampling.stop has " + s.getStopCount() + " strings", limits.maxStops(), "lightmesh.max-stop-strings");
        }
        for (int i = 0; i < s.getStopCount(); i++) {
            String stop = s.getStop(i);
            if (stop.isEmpty()) throw invalid("sampling.stop[" + i + "] must not be empty");
            if (stop.length() > limits.maxStopChars()) {
                throw overLimit("sampling.stop[" + i + "] has " + stop.length() + " characters", limits.maxStopChars(), "lightmesh.max-stop-chars");
            }
        }
        SamplingChecks.check(s);   // n, log-probabilities, penalties
        if (s.getStopCount() > 0 && tokenizer == null) {
            throw invalid("sampling.stop: model " + modelId + " has no tokenizer.json, so stop strings cannot be matched");
        }
    }

    private void checkChat(ChatInput chat, String field) {
        if (chat.getMessagesCount() > limits.maxMessages()) {
            throw overLimit(field + ".messages has " + chat.getMessagesCount(), limits.maxMessages(), "lightmesh.max-messages");
        }
        if (chat.getToolsCount() > limits.maxTools()) {
            throw overLimit(field + ".tools has " + chat.getToolsCount(), limits.maxTools(), "lightmesh.max-tools");
        }
    }

    private void checkId(String field, String value) {
        if (value.length() > limits.maxIdChars()) throw invalid(field + " has " + value.length() + " characters; at most " + limits.maxIdChars());
    }

    private StatusRuntimeException tooManyTokens(int n) {
        return overLimit("prompt has " + n + " tokens", maxPromptTokens, "lightmesh.max-prompt-tokens");
    }

    private static StatusRuntimeException overLimit(String what, int limit, String key) {
        return invalid(what + "; this server admits at most " + limit + " (" + key + ")");
    }

    private static StatusRuntimeException invalid(String m) { return Prompts.invalid(m); }
}
