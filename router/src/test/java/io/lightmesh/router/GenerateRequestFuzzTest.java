package io.lightmesh.router;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.google.protobuf.InvalidProtocolBufferException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.fuzz.FuzzHarness;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.TokenizeResponse;

import io.lightmesh.proto.v1.ChatInput;
import io.lightmesh.proto.v1.ChatMessage;
import io.lightmesh.proto.v1.Role;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;
import io.lightmesh.proto.v1.Tool;
import io.lightmesh.proto.v1.ToolCall;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static io.lightmesh.engine.fuzz.FuzzHarness.committedSeed;
import static io.lightmesh.engine.fuzz.FuzzHarness.parsedOrRefused;
import static io.lightmesh.engine.fuzz.FuzzHarness.refusal;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The public gRPC API's requests as bytes from outside (mutated protobuf): parsed as gRPC's unmarshaller parses them
 * (bytes that are no message fail there), then through the router's validation path ({@link RequestValidator}: the
 * limits, the chat template, the tokenizer, the sampling checks) as a GenerateRequest and as a TokenizeRequest.
 * A request is either admitted as a spec within every limit or refused with INVALID_ARGUMENT and a description;
 * any other exception is a finding. The limits are small here (512 prompt tokens, 64 new tokens, 8 messages, 4 tools,
 * 4 stops of 16 characters) so the fuzzer reaches both sides of each. Seeds (GenerateRequestFuzzTestInputs): token,
 * prompt and chat requests with tools, tool calls and results, and full sampling.
 */
class GenerateRequestFuzzTest {
    static final RequestLimits LIMITS = new RequestLimits(64, 8, 4, 4, 16, 32);
    private static final RequestValidator VALIDATOR = DemoModel.validator(512, LIMITS);
    /** The validator's one way to refuse a request. */
    private static final FuzzHarness.Refusal<StatusRuntimeException> INVALID_ARGUMENT =
            refusal(StatusRuntimeException.class, GenerateRequestFuzzTest::assertInvalidArgument);

    @FuzzTest(maxDuration = "10s")
    void generateRequest(byte[] message) throws Exception {
        GenerateRequest r = parsedOrRefused(() -> GenerateRequest.parseFrom(message), refusal(InvalidProtocolBufferException.class));
        if (r == null) return;
        GenerationSpec spec = parsedOrRefused(() -> VALIDATOR.validate(r, "fuzz"), INVALID_ARGUMENT);
        if (spec != null) {
            assertTrue(spec.getPromptTokensCount() >= 1 && spec.getPromptTokensCount() <= 512);
            assertTrue(spec.getSampling().getMaxNewTokens() >= 1 && spec.getSampling().getMaxNewTokens() <= LIMITS.maxNewTokens());
            assertTrue(spec.getSampling().getStopCount() <= LIMITS.maxStops());
            for (int t : spec.getPromptTokensList()) assertTrue(t >= 0 && t < DemoModel.CONFIG.vocabSize());
        }
        TokenizeResponse t = parsedOrRefused(() -> VALIDATOR.tokenize(TokenizeRequest.parseFrom(message)),
                refusal(InvalidProtocolBufferException.class), // the same bytes need not be a TokenizeRequest
                INVALID_ARGUMENT);
        if (t != null) assertEquals(t.getCount(), t.getIdsCount());
    }

    static void assertInvalidArgument(StatusRuntimeException e) {
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), () -> "undocumented status " + e.getStatus());
        assertNotNull(e.getStatus().getDescription());
    }

    /** The seeds: each a request the validator admits, so the corpus starts on the accepting side of every check. */
    static List<GenerateRequest> seeds() {
        ChatInput chat = ChatInput.newBuilder()
                .addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_SYSTEM).setContent("Be brief."))
                .addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_USER).setContent("Weather in Paris?"))
                .addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_ASSISTANT)
                        .addToolCalls(ToolCall.newBuilder().setId("c1").setName("get_weather").setArgumentsJson("{\"city\": \"Paris\"}")))
                .addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_TOOL).setToolCallId("c1").setContent("sunny"))
                .addTools(Tool.newBuilder().setName("get_weather").setDescription("Weather of a city")
                        .setParametersJson("{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}"))
                .build();
        SamplingParams full = SamplingParams.newBuilder().setTemperature(0.7f).setTopK(40).setTopP(0.9f).setSeed(7)
                .setMaxNewTokens(32).addStop("\n\n").addStop("END").setMaxThinkingTokens(8).build();
        return List.of(
                GenerateRequest.newBuilder().setTokenIds(TokenIds.newBuilder().addIds(1).addIds(2).addIds(3)).build(),
                GenerateRequest.newBuilder().setPrompt("Once upon a time").setRequestId("r-1").setConversationId("c-1")
                        .setSampling(full).setReturnTokenIds(true).build(),
                GenerateRequest.newBuilder().setChat(chat).setParseOutput(true)
                        .setSampling(SamplingParams.newBuilder().setMaxNewTokens(64).setIgnoreEos(true)).build());
    }

    @Test
    void seedsAreAdmitted() throws Exception {
        Path dir = Path.of("src/test/resources/io/lightmesh/router/GenerateRequestFuzzTestInputs/generateRequest");
        List<GenerateRequest> seeds = seeds();
        for (int i = 0; i < seeds.size(); i++) {
            VALIDATOR.validate(seeds.get(i), "seed");
            byte[] committed = committedSeed(dir, "request" + i, seeds.get(i).toByteArray());
            assertEquals(seeds.get(i), GenerateRequest.parseFrom(committed), "seed request" + i + " as committed");
        }
    }
}
