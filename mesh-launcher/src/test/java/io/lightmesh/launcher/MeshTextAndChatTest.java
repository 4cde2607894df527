package io.lightmesh.launcher;

import io.lightmesh.engine.chat.ChatTemplate;
import io.lightmesh.engine.chat.OutputParser;
import io.lightmesh.engine.chat.ParsedOutput;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.tokenizer.Tokenizer;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.ChatInput;
import io.lightmesh.proto.v1.ChatMessage;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.Role;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.Tool;
import io.lightmesh.proto.v1.ToolCall;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.TokenizeResponse;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Text and chat through the mesh (real Kafka, real gRPC, remote experts) on a model with the fixture tokenizer
 * that writes a known answer after a chat prompt ({@link ScriptedCheckpoint}): a reasoning block, an answer and a
 * tool call. Checks the chat template and tokenizer at the router, stop strings, the thinking budget, reasoning and
 * tool calls split by the streaming parser, TOOL_CALLS, usage, and that every output equals the engine's own
 * {@link Generator} on the same prompt.
 */
class MeshTextAndChatTest {
    static final Path FIXTURE_TOKENIZER = Path.of("../engine/src/test/resources/fixtures/tokenizer");
    static final List<String> SCRIPT = List.of("<think>", "The user wants", " the weather", " in Paris.", "</think>",
            "Let me ", "check", " the forecast.", "<tool_calls>", "\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": ",
            "\"Paris\"}}\n", "</tool_calls>");
    static final String RAW = String.join("", SCRIPT);

    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    @RegisterExtension static final TestMesh running = new TestMesh();
    static EmbeddedMesh mesh;
    static InferenceGrpc.InferenceBlockingStub client;
    static Tokenizer tok;
    static int[] script;

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        script = ScriptedCheckpoint.write(model, FIXTURE_TOKENIZER, "Ċ", SCRIPT);
        mesh = running.ready(EmbeddedMesh.start(new EmbeddedMesh.Options(model, "127.0.0.1", 0, -1, kafka.bootstrapServers(), dir, 2, 1, 1,
                1L << 30, 16, "lightmesh.requests.v1", 64, 64)));
        client = InferenceGrpc.newBlockingStub(running.channel()).withDeadlineAfter(120, TimeUnit.SECONDS);
        tok = mesh.model().tokenizer();
    }

    static ChatInput weatherChat() {
        return ChatInput.newBuilder()
                .addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_SYSTEM).setContent("You are a helpful assistant."))
                .addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_USER).setContent("What is the weather in Paris?"))
                .addTools(Tool.newBuilder().setName("get_weather").setDescription("Current weather of a city")
                        .setParametersJson("{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}"))
                .build();
    }

    /** The prompt the router must build for {@link #weatherChat()}: the engine's template, then its tokenizer. */
    static int[] weatherPrompt() {
        String text = ChatTemplate.render(List.of(io.lightmesh.engine.chat.ChatMessage.system("You are a helpful assistant."),
                        io.lightmesh.engine.chat.ChatMessage.user("What is the weather in Paris?")),
                List.of(io.lightmesh.engine.chat.ToolDefinition.of("get_weather", "Current weather of a city",
                        "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}")), true);
        return tok.encode(text);
    }

    static GenerateRequest chat(SamplingParams.Builder sampling, boolean parse) {
        return GenerateRequest.newBuilder().setChat(weatherChat()).setParseOutput(parse).setReturnTokenIds(true)
                .setSampling(sampling).build();
    }

    static Generator.Result engine(int[] prompt, io.lightmesh.engine.generate.SamplingParams p) {
        return Generator.generate(mesh.model().model(), tok, prompt, p, null);
    }

    static List<Integer> list(int[] a) { return Arrays.stream(a).boxed().toList(); }

    @Test
    void chatIsRenderedWithTheTemplateAndTokenizedAsTheEngineDoes() {
        int[] prompt = weatherPrompt();
        assertEquals(tok.tokenId("Ċ"), prompt[prompt.length - 1], "the generation prompt ends with a newline token");
        TokenizeResponse t = client.tokenize(TokenizeRequest.newBuilder().setChat(weatherChat()).build());
        assertEquals(list(prompt), t.getIdsList());
        assertEquals(prompt.length, t.getCount());
        TokenizeResponse text = client.tokenize(TokenizeRequest.newBuilder().setText("Hello world<end_of_sentence>").setReturnPieces(true).build());
        assertEquals(list(tok.encode("Hello world<end_of_sentence>")), text.getIdsList());
        assertEquals("Hello world<end_of_sentence>", String.join("", text.getPiecesList()));
        assertEquals("<end_of_sentence>", text.getPieces(text.getPiecesCount() - 1), "special tokens are matched");
    }

    @Test
    void chatAnswerSplitsReasoningTextAndToolCalls() {
        GenerateResponse r = client.generate(chat(SamplingParams.newBuilder().setTemperature(0f), true));
        assertEquals(list(Arrays.copyOf(script, script.length - 1)), r.getTokenIdsList(), "the script, eos excluded");
        assertEquals("The user wants the weather in Paris.", r.getReasoning());
        assertEquals("Let me check the forecast.", r.getText());
        assertEquals(1, r.getToolCallsCount());
        ToolCall c = r.getToolCalls(0);
        assertEquals("get_weather", c.getName());
        assertEquals("{\"city\":\"Paris\"}", c.getArgumentsJson());
        assertEquals(0, c.getIndex());
        assertEquals("call_" + r.getRequestId() + "_0", c.getId());
        assertEquals(FinishReason.FINISH_REASON_TOOL_CALLS, r.getFinishReason());
        assertEquals(weatherPrompt().length, r.getUsage().getPromptTokens());
        assertEquals(SCRIPT.size(), r.getUsage().getCompletionTokens());
        assertEquals(3, r.getUsage().getReasoningTokens());
        assertEquals(r.getUsage().getPromptTokens() + r.getUsage().getCompletionTokens(), r.getUsage().getTotalTokens());
        // the engine, in process, on the same prompt
        Generator.Result e = engine(weatherPrompt(), io.lightmesh.engine.generate.SamplingParams.greedy(64));
        assertEquals(list(e.tokens()), r.getTokenIdsList());
        ParsedOutput parsed = OutputParser.parse(e.text());
        assertEquals(parsed.reasoning(), r.getReasoning());
        assertEquals(parsed.content(), r.getText());
    }

    @Test
    void withoutParseOutputTheRawTextKeepsItsTags() {
        GenerateResponse r = client.generate(chat(SamplingParams.newBuilder().setTemperature(0f), false));
        assertEquals(RAW, r.getText());
        assertEquals("", r.getReasoning());
        assertEquals(0, r.getToolCallsCount());
        assertEquals(FinishReason.FINISH_REASON_TOOL_CALLS, r.getFinishReason(), "the turn made a tool call all the same");
    }

    @Test
    void streamingNeverMixesReasoningIntoTheAnswer() {
        Iterator<GenerateChunk> it = InferenceGrpc.newBlockingStub(running.channel()).withDeadlineAfter(120, TimeUnit.SECONDS)
                .generateStream(chat(SamplingParams.newBuilder().setTemperature(0.8f).setSeed(5), true));
        StringBuilder text = new StringBuilder(), reasoning = new StringBuilder();
        List<ToolCall> calls = new ArrayList<>();
        List<Integer> ids = new ArrayList<>();
        GenerateChunk last = null;
        int chunks = 0;
        while (it.hasNext()) {
            last = it.next();
            chunks++;
            assertFalse(last.getTextDelta().contains("weather in") || last.getTextDelta().contains("think>"), last.toString());
            assertFalse(last.getReasoningDelta().contains("forecast"), last.toString());
            text.append(last.getTextDelta());
            reasoning.append(last.getReasoningDelta());
            calls.addAll(last.getToolCallsList());
            ids.addAll(last.getTokenIdsList());
        }
        assertTrue(chunks >= SCRIPT.size(), "a chunk per token at least: " + chunks);
        assertEquals("The user wants the weather in Paris.", reasoning.toString());
        assertEquals("Let me check the forecast.", text.toString());
        assertEquals(1, calls.size(), "each tool call once, whole");
        assertEquals("get_weather", calls.get(0).getName());
        assertEquals(list(Arrays.copyOf(script, script.length - 1)), ids);
        assertEquals(FinishReason.FINISH_REASON_TOOL_CALLS, last.getFinishReason());
        assertEquals(SCRIPT.size(), last.getUsage().getCompletionTokens());
    }

    @Test
    void stopStringAcrossTokensCutsTheText() {
        GenerateResponse r = client.generate(chat(SamplingParams.newBuilder().setTemperature(0f).addStop("check the"), false));
        assertEquals(FinishReason.FINISH_REASON_STOP, r.getFinishReason());
        assertEquals("check the", r.getMatchedStop());
        Generator.Result e = engine(weatherPrompt(), new io.lightmesh.engine.generate.SamplingParams(0f, 0, 1f, 0, 64, List.of("check the"), 0));
        assertEquals(e.text(), r.getText());
        assertEquals("<think>The user wants the weather in Paris.</think>Let me ", r.getText());
        assertEquals(list(e.tokens()), r.getTokenIdsList());
    }

    @Test
    void thinkingBudgetClosesTheReasoning() {
        int budget = 2;
        GenerateResponse r = client.generate(chat(SamplingParams.newBuilder().setTemperature(0f).setMaxThinkingTokens(budget).setMaxNewTokens(12), true));
        Generator.Result e = engine(weatherPrompt(), new io.lightmesh.engine.generate.SamplingParams(0f, 0, 1f, 0, 12, List.of(), budget));
        assertEquals(list(e.tokens()), r.getTokenIdsList());
        int[] forced = tok.encode("\n</think>\n");
        assertArrayEquals(forced, Arrays.copyOfRange(e.tokens(), 1 + budget, 1 + budget + forced.length),
                "after " + budget + " thinking tokens the close is forced");
        assertEquals("The user wants the weather", r.getReasoning());
        assertEquals(OutputParser.parse(e.text()).content(), r.getText());
        assertEquals(FinishReason.FINISH_REASON_LENGTH, r.getFinishReason());
    }

    @Test
    void textPromptWithSeededSamplingMatchesTheEngine() {
        String prompt = "Hello world, tell me something";
        for (long seed : new long[]{1, 2, 3}) {
            GenerateResponse r = client.generate(GenerateRequest.newBuilder().setPrompt(prompt).setReturnTokenIds(true)
                    .setSampling(SamplingParams.newBuilder().setTemperature(1.2f).setTopP(0.95f).setSeed(seed).setMaxNewTokens(16)).build());
            Generator.Result e = engine(tok.encode(prompt), new io.lightmesh.engine.generate.SamplingParams(1.2f, 0, 0.95f, seed, 16, List.of(), 0));
            assertEquals(list(e.tokens()), r.getTokenIdsList(), "seed " + seed);
            assertEquals(e.text(), r.getText());
            assertEquals(tok.encode(prompt).length, r.getUsage().getPromptTokens());
        }
    }

    @Test
    void toolResultsAreRenderedFromTheirCallIds() {
        ChatInput round = weatherChat().toBuilder()
                .addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_ASSISTANT).setContent("Let me check the forecast.")
                        .addToolCalls(ToolCall.newBuilder().setId("call_1").setName("get_weather").setArgumentsJson("{\"city\": \"Paris\"}")))
                .addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_TOOL).setToolCallId("call_1").setContent("{\"temp_c\": 21}"))
                .build();
        TokenizeResponse t = client.tokenize(TokenizeRequest.newBuilder().setChat(round).build());
        String text = ChatTemplate.render(List.of(io.lightmesh.engine.chat.ChatMessage.system("You are a helpful assistant."),
                        io.lightmesh.engine.chat.ChatMessage.user("What is the weather in Paris?"),
                        io.lightmesh.engine.chat.ChatMessage.assistant("Let me check the forecast.",
                                List.of(new io.lightmesh.engine.chat.ToolCall("get_weather", "{\"city\": \"Paris\"}"))),
                        io.lightmesh.engine.chat.ChatMessage.tool("get_weather", "{\"temp_c\": 21}")),
                List.of(io.lightmesh.engine.chat.ToolDefinition.of("get_weather", "Current weather of a city",
                        "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}")), true);
        assertEquals(list(tok.encode(text)), t.getIdsList());
        var bad = org.junit.jupiter.api.Assertions.assertThrows(io.grpc.StatusRuntimeException.class, () -> client.tokenize(
                TokenizeRequest.newBuilder().setChat(ChatInput.newBuilder().addMessages(ChatMessage.newBuilder().setRole(Role.ROLE_TOOL)
                        .setToolCallId("nope").setContent("x"))).build()));
        assertEquals(io.grpc.Status.Code.INVALID_ARGUMENT, bad.getStatus().getCode());
        assertTrue(bad.getStatus().getDescription().contains("chat.messages[0]"), bad.getStatus().getDescription());
    }
}
