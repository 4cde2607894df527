package io.lightmesh.client.it;

import io.lightmesh.client.ChatMessage;
import io.lightmesh.client.Completion;
import io.lightmesh.client.FinishReason;
import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.client.Tool;
import io.lightmesh.launcher.EmbeddedMesh;
import org.apache.kafka.common.test.KafkaClusterTestKit;
import org.apache.kafka.common.test.TestKitNodes;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * README's chat, thinking-budget and tool-call examples against the real router serving models/demo (the mesh of
 * EmbeddedMesh, as {@code ./lightmesh serve} runs it: router, prefill and decode workers, a real KRaft broker): the
 * demo model was trained on chats that think in {@code <think>} and call tools (tools/reference/chats.py), so its
 * answers must come back parsed. Through the SDK (always), and through the official {@code openai} npm client
 * (tools/openai-client-test/demo.mjs; skipped when node or the client is missing, unless
 * LIGHTMESH_REQUIRE_NODE_TESTS=1). Greedy, so the assertions hold on every run.
 */
class DemoModelMeshTest {
    private static final Path DEMO = Path.of("..", "models", "demo").toAbsolutePath().normalize();
    private static final Path SCRIPT_DIR = Path.of("..", "tools", "openai-client-test").toAbsolutePath().normalize();
    private static final Tool WEATHER = Tool.function("get_weather", "Current weather in a city",
            "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}");
    @TempDir static Path dir;
    static KafkaClusterTestKit kafka;
    static EmbeddedMesh mesh;
    static LightMeshClient client;

    @BeforeAll
    static void start() throws Exception {
        kafka = new KafkaClusterTestKit.Builder(new TestKitNodes.Builder().setCombined(true).setNumBrokerNodes(1).setNumControllerNodes(1).build())
                .setConfigProp("group.initial.rebalance.delay.ms", "0")
                .setConfigProp("offsets.topic.replication.factor", "1")
                .setConfigProp("offsets.topic.num.partitions", "4")
                .setConfigProp("transaction.state.log.replication.factor", "1")
                .setConfigProp("transaction.state.log.min.isr", "1").build();
        kafka.format();
        kafka.startup();
        kafka.waitForReadyBrokers();
        mesh = EmbeddedMesh.start(new EmbeddedMesh.Options(DEMO, "127.0.0.1", 0, 0, kafka.bootstrapServers(), dir, 0, 1, 1,
                1L << 30, 32, "lightmesh.requests.v1", 4, 32));
        assertTrue(mesh.awaitReady(60_000), () -> "mesh not ready: " + mesh.router().health());
        client = LightMeshClient.builder().target(mesh.routerTarget()).defaultDeadline(Duration.ofSeconds(120)).build();
    }

    @AfterAll
    static void stop() throws Exception {
        if (client != null) client.close();
        if (mesh != null) mesh.close();
        if (kafka != null) kafka.close();
    }

    private static GenerationRequest.Builder prime() {
        return GenerationRequest.chat(ChatMessage.user("Is 1001 prime?")).temperature(0).maxTokens(200);
    }

    @Test
    void thinksThenAnswersAndTheThinkingBudgetCutsTheReasoningShort() {
        Completion free = client.generate(prime().build());
        assertEquals(FinishReason.STOP, free.finishReason(), "the model closes its reasoning and answers");
        assertTrue(free.reasoning().contains("1001"), free.reasoning());
        assertTrue(!free.text().isEmpty() && !free.text().contains("<think>") && !free.text().contains("</think>"), free.text());
        assertTrue(free.usage().reasoningTokens() > 16, "a long reasoning: " + free.usage());

        Completion cut = client.generate(prime().maxThinkingTokens(8).build());
        assertTrue(cut.usage().reasoningTokens() < free.usage().reasoningTokens(), cut.usage() + " vs " + free.usage());
        assertTrue(cut.usage().reasoningTokens() <= 8 + 4, "the budget bounds the reasoning: " + cut.usage());
        assertTrue(!cut.reasoning().isEmpty() && free.reasoning().startsWith(cut.reasoning()),
                "greedy: the cut reasoning is the start of the full one: " + cut.reasoning());
        assertTrue(!cut.text().isEmpty(), "an answer follows the forced </think>");
    }

    @Test
    void toolCallRoundTripThroughTheSdk() {
        List<ChatMessage> chat = new ArrayList<>(List.of(ChatMessage.user("What's the weather in Paris?")));
        Completion turn = client.generate(GenerationRequest.chat(chat).tools(WEATHER).temperature(0).maxTokens(128).build());
        assertEquals(FinishReason.TOOL_CALLS, turn.finishReason(), turn.toString());
        assertEquals(1, turn.toolCalls().size());
        assertEquals("get_weather", turn.toolCalls().getFirst().name());
        assertEquals("{\"city\":\"Paris\"}", turn.toolCalls().getFirst().argumentsJson().replace(" ", ""));
        assertTrue(turn.reasoning().contains("Paris"), turn.reasoning());
        chat.add(ChatMessage.assistant(turn));
        chat.add(ChatMessage.toolResult(turn.toolCalls().getFirst(), "{\"sky\":\"sunny\",\"celsius\":21}"));
        Completion answer = client.generate(GenerationRequest.chat(chat).tools(WEATHER).temperature(0).maxTokens(128).build());
        assertEquals(FinishReason.STOP, answer.finishReason());
        assertTrue(answer.text().contains("sunny") && answer.text().contains("21"), answer.text());
    }

    @Test
    void readmeRequestsWithTheOfficialOpenAiClient() throws Exception {
        boolean required = "1".equals(System.getenv("LIGHTMESH_REQUIRE_NODE_TESTS"));
        boolean installed = Files.isDirectory(SCRIPT_DIR.resolve("node_modules/openai")) && canRun("node", "--version");
        if (required) assertTrue(installed, "node and " + SCRIPT_DIR + "/node_modules/openai are needed (npm ci there)");
        Assumptions.assumeTrue(installed, "node or the openai npm package is missing: run npm ci in tools/openai-client-test");
        String base = "http://127.0.0.1:" + mesh.httpPort() + "/v1";
        List<String> cmd = new ArrayList<>(List.of("node", "demo.mjs", base));
        String rates = System.getProperty("lightmesh.demo.rates");   // e.g. -Dlightmesh.demo.rates=20: README figures
        if (rates != null) cmd.addAll(List.of("--rates", rates));
        Process p = new ProcessBuilder(cmd).directory(SCRIPT_DIR.toFile()).redirectErrorStream(true).start();
        boolean done = p.waitFor(rates == null ? 300 : 1800, TimeUnit.SECONDS);
        if (!done) p.destroyForcibly();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        System.out.println(out);
        assertTrue(done, "node finished");
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("all 5 demo checks passed"), out);
    }

    private static boolean canRun(String... cmd) {
        try {
            return new ProcessBuilder(cmd).redirectErrorStream(true).start().waitFor(10, TimeUnit.SECONDS);
        } catch (Exception e) {
            return false;
        }
    }
}
