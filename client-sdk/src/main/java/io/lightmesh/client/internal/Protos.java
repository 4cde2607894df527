package io.lightmesh.client.internal;

import io.lightmesh.client.ChatMessage;
import io.lightmesh.client.Choice;
import io.lightmesh.client.Completion;
import io.lightmesh.client.Delta;
import io.lightmesh.client.FinishReason;
import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.Health;
import io.lightmesh.client.ModelInfo;
import io.lightmesh.client.RequestStats;
import io.lightmesh.client.Role;
import io.lightmesh.client.TokenLogprob;
import io.lightmesh.client.Tokens;
import io.lightmesh.client.Tool;
import io.lightmesh.client.ToolCall;
import io.lightmesh.client.Usage;
import io.lightmesh.proto.v1.ChatInput;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.HealthResponse;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.ServingStatus;
import io.lightmesh.proto.v1.TokenIds;
import io.lightmesh.proto.v1.TokenizeResponse;

import java.util.List;
import java.util.UUID;

/** Conversions between the SDK's types and the lightmesh.v1 messages. */
public final class Protos {
    private Protos() {}

    /** The wire request; a request id is assigned when the caller set none, so that every retry carries the same. */
    public static GenerateRequest toProto(GenerationRequest r) {
        GenerateRequest.Builder b = GenerateRequest.newBuilder()
                .setRequestId(r.requestId() != null ? r.requestId() : UUID.randomUUID().toString())
                .setReturnTokenIds(r.returnTokenIds())
                .setParseOutput(r.parseOutput());
        if (r.conversationId() != null) b.setConversationId(r.conversationId());
        if (r.prompt() != null) b.setPrompt(r.prompt());
        else if (r.tokenIds() != null) b.setTokenIds(TokenIds.newBuilder().addAllIds(r.tokenIds()));
        else b.setChat(chat(r.messages(), r.tools()));
        SamplingParams.Builder s = SamplingParams.newBuilder()
                .setTopK(r.topK()).setMaxThinkingTokens(r.maxThinkingTokens()).addAllStop(r.stop()).setIgnoreEos(r.ignoreEos());
        if (r.temperature() != null) s.setTemperature(r.temperature().floatValue());
        if (r.topP() != null) s.setTopP(r.topP().floatValue());
        if (r.seed() != null) s.setSeed(r.seed());
        if (r.maxTokens() != null) s.setMaxNewTokens(r.maxTokens());
        if (r.n() > 1) s.setN(r.n());
        if (r.logprobs() != null) s.setLogprobs(r.logprobs());
        if (r.promptLogprobs() != null) s.setPromptLogprobs(r.promptLogprobs());
        s.setPresencePenalty((float) r.presencePenalty()).setFrequencyPenalty((float) r.frequencyPenalty());
        if (r.repetitionPenalty() != null) s.setRepetitionPenalty(r.repetitionPenalty().floatValue());
        return b.setSampling(s).build();
    }

    /** A chat input: messages and tools. */
    public static ChatInput chat(List<ChatMessage> messages, List<Tool> tools) {
        ChatInput.Builder c = ChatInput.newBuilder();
        for (ChatMessage m : messages) {
            io.lightmesh.proto.v1.ChatMessage.Builder pm = io.lightmesh.proto.v1.ChatMessage.newBuilder()
                    .setRole(role(m.role())).setContent(m.content()).setName(m.name()).setToolCallId(m.toolCallId())
                    .setReasoningContent(m.reasoning());
            for (ToolCall t : m.toolCalls()) pm.addToolCalls(toProto(t));
            c.addMessages(pm);
        }
        for (Tool t : tools) {
            c.addTools(io.lightmesh.proto.v1.Tool.newBuilder().setName(t.name()).setDescription(t.description())
                    .setParametersJson(t.parametersJson()));
        }
        return c.build();
    }

    static io.lightmesh.proto.v1.Role role(Role r) {
        return switch (r) {
            case SYSTEM -> io.lightmesh.proto.v1.Role.ROLE_SYSTEM;
            case USER -> io.lightmesh.proto.v1.Role.ROLE_USER;
            case ASSISTANT -> io.lightmesh.proto.v1.Role.ROLE_ASSISTANT;
            case TOOL -> io.lightmesh.proto.v1.Role.ROLE_TOOL;
        };
    }

    /** The wire tool call. */
    public static io.lightmesh.proto.v1.ToolCall toProto(ToolCall t) {
        return io.lightmesh.proto.v1.ToolCall.newBuilder().setId(t.id()).setIndex(t.index()).setName(t.name())
                .setArgumentsJson(t.argumentsJson()).build();
    }

    /** The SDK's tool call. */
    public static ToolCall fromProto(io.lightmesh.proto.v1.ToolCall t) {
        return new ToolCall(t.getId(), t.getIndex(), t.getName(), t.getArgumentsJson());
    }

    /** The SDK's finish reason; null for UNSPECIFIED (not finished). */
    public static FinishReason finishReason(io.lightmesh.proto.v1.FinishReason r) {
        return switch (r) {
            case FINISH_REASON_STOP -> FinishReason.STOP;
            case FINISH_REASON_LENGTH -> FinishReason.LENGTH;
            case FINISH_REASON_TOOL_CALLS -> FinishReason.TOOL_CALLS;
            case FINISH_REASON_CANCELLED -> FinishReason.CANCELLED;
            case FINISH_REASON_UNSPECIFIED, UNRECOGNIZED -> null;
        };
    }

    /** The wire finish reason. */
    public static io.lightmesh.proto.v1.FinishReason toProto(FinishReason r) {
        return switch (r) {
            case STOP -> io.lightmesh.proto.v1.FinishReason.FINISH_REASON_STOP;
            case LENGTH -> io.lightmesh.proto.v1.FinishReason.FINISH_REASON_LENGTH;
            case TOOL_CALLS -> io.lightmesh.proto.v1.FinishReason.FINISH_REASON_TOOL_CALLS;
            case CANCELLED -> io.lightmesh.proto.v1.FinishReason.FINISH_REASON_CANCELLED;
        };
    }

    static Usage usage(io.lightmesh.proto.v1.Usage u) {
        return new Usage(u.getPromptTokens(), u.getCompletionTokens(), u.getReasoningTokens(), u.getTotalTokens(), u.getCachedTokens());
    }

    static RequestStats stats(io.lightmesh.proto.v1.RequestStats s) {
        return new RequestStats(s.getQueueUs(), s.getPrefillUs(), s.getTransferUs(), s.getStateBytes(), s.getDecodeWorker(), s.getResumes());
    }

    /** The SDK's whole answer. A response without a finish reason is taken as STOP. */
    public static Completion fromProto(GenerateResponse r) {
        FinishReason f = finishReason(r.getFinishReason());
        List<Choice> choices = r.getChoicesList().stream().map(c -> {
            FinishReason cf = finishReason(c.getFinishReason());
            return new Choice(c.getIndex(), c.getText(), c.getReasoning(), c.getToolCallsList().stream().map(Protos::fromProto).toList(),
                    c.getTokenIdsList(), logprobs(c.getLogprobsList()), cf == null ? FinishReason.STOP : cf, c.getMatchedStop(),
                    c.getCompletionTokens(), c.getReasoningTokens());
        }).toList();
        return new Completion(r.getRequestId(), r.getText(), r.getReasoning(),
                r.getToolCallsList().stream().map(Protos::fromProto).toList(), r.getTokenIdsList(),
                f == null ? FinishReason.STOP : f, r.getMatchedStop(), usage(r.getUsage()), stats(r.getStats()),
                logprobs(r.getLogprobsList()), r.getPromptTokenIdsList(), logprobs(r.getPromptLogprobsList()), choices);
    }

    /** The SDK's delta; finish reason on each choice's last chunk, usage and stats only on the stream's last. */
    public static Delta fromProto(GenerateChunk c) {
        FinishReason f = finishReason(c.getFinishReason());
        boolean last = f != null && c.hasUsage();
        return new Delta(c.getRequestId(), c.getTextDelta(), c.getReasoningDelta(),
                c.getToolCallsList().stream().map(Protos::fromProto).toList(), c.getTokenIdsList(), f, c.getMatchedStop(),
                last ? usage(c.getUsage()) : null, last ? stats(c.getStats()) : null, c.getChoiceIndex(),
                logprobs(c.getLogprobsList()), c.getPromptTokenIdsList(), logprobs(c.getPromptLogprobsList()));
    }

    /** The SDK's log-probabilities. */
    static List<TokenLogprob> logprobs(List<io.lightmesh.proto.v1.TokenLogprob> lps) {
        return lps.stream().map(Protos::fromProto).toList();
    }

    static TokenLogprob fromProto(io.lightmesh.proto.v1.TokenLogprob t) {
        return new TokenLogprob(t.getTokenId(), t.getToken(), t.getBytes().toByteArray(), t.getLogprob(), logprobs(t.getTopLogprobsList()));
    }

    /** The SDK's tokens. */
    public static Tokens fromProto(TokenizeResponse r) { return new Tokens(r.getIdsList(), r.getPiecesList()); }

    /** The SDK's model info. */
    public static ModelInfo fromProto(io.lightmesh.proto.v1.ModelInfo m) {
        return new ModelInfo(m.getModelId(), m.getModelType(), m.getVocabSize(), m.getNumLayers(), m.getNumExperts(), m.getTopK(),
                m.getMaxPositions(), m.getMaxPromptTokens(), m.getDefaultMaxNewTokens(), m.getParameterCount(),
                m.getActiveParameterCount(), m.getServingMode());
    }

    /** The SDK's health. */
    public static Health fromProto(HealthResponse h) {
        return new Health(h.getStatus() == ServingStatus.SERVING_STATUS_SERVING, h.getComponentsList().stream()
                .map(c -> new Health.Component(c.getName(), c.getAddress(), c.getReachable(), c.getDetail())).toList());
    }
}
