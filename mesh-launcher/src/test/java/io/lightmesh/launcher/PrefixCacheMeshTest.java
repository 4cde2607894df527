package io.lightmesh.launcher;

import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.prefix.PrefixCache;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.prefill.PrefillWorker;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.metrics.SdkMeterProvider;
import io.opentelemetry.sdk.metrics.data.LongPointData;
import io.opentelemetry.sdk.metrics.data.MetricData;
import io.opentelemetry.sdk.testing.exporter.InMemoryMetricReader;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.common.GroupState;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The prefix cache through the mesh (real Kafka, two prefill workers, real gRPC and HTTP) on the demo model: requests
 * of one conversation reach the worker holding their prefix, report the tokens restored from it (gRPC usage, OpenAI
 * usage.prompt_tokens_details.cached_tokens, the workers' metrics), and answer exactly what the engine answers
 * without a cache (greedy).
 */
class PrefixCacheMeshTest {
    static final Path DEMO = Path.of("../models/demo");

    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    @RegisterExtension static final TestMesh running = new TestMesh();
    static EmbeddedMesh mesh;
    static InferenceGrpc.InferenceBlockingStub client;
    static final InMemoryMetricReader prefillMetrics = InMemoryMetricReader.create();
    static OpenTelemetrySdk prefillSdk;

    static OpenTelemetry telemetry(String service) {
        if (!service.equals("lightmesh-prefill")) return OpenTelemetry.noop();
        prefillSdk = OpenTelemetrySdk.builder().setMeterProvider(SdkMeterProvider.builder().registerMetricReader(prefillMetrics).build()).build();
        return prefillSdk;
    }

    @BeforeAll
    static void start() throws Exception {
        // experts in the workers, one decode worker, two prefill workers with a 64 MiB prefix cache each
        mesh = running.ready(EmbeddedMesh.start(new EmbeddedMesh.Options(DEMO, "127.0.0.1", 0, 0, kafka.bootstrapServers(), dir, 0, 1, 2,
                1L << 30, 16, "lightmesh.requests.v1", 64, 64, "auto", 64L << 20), PrefixCacheMeshTest::telemetry));
        awaitStableGroup(2);
        client = InferenceGrpc.newBlockingStub(running.channel());
    }

    /** Until both workers hold partitions: a rebalance after that would move a conversation (a miss, by design). */
    static void awaitStableGroup(int members) throws Exception {
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()))) {
            long until = System.currentTimeMillis() + 60_000;
            while (true) {
                ConsumerGroupDescription g = admin.describeConsumerGroups(List.of("lightmesh-prefill")).all().get(10, TimeUnit.SECONDS).get("lightmesh-prefill");
                if (g.groupState() == GroupState.STABLE && g.members().size() == members
                        && g.members().stream().allMatch(m -> !m.assignment().topicPartitions().isEmpty())) return;
                if (System.currentTimeMillis() > until) throw new AssertionError("prefill group not stable: " + g);
                Thread.sleep(200);
            }
        }
    }

    @AfterAll
    static void stop() throws Exception {
        if (prefillSdk != null) prefillSdk.close();
    }

    static int[] tokens(long seed, int n) { return new SplittableRandom(seed).ints(n, 0, mesh.model().config().vocabSize()).toArray(); }

    static int[] concat(int[]... parts) {
        int[] out = new int[Arrays.stream(parts).mapToInt(p -> p.length).sum()];
        int at = 0;
        for (int[] p : parts) { System.arraycopy(p, 0, out, at, p.length); at += p.length; }
        return out;
    }

    static GenerateResponse generate(String conversation, int[] prompt) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int t : prompt) ids.addIds(t);
        return client.withDeadlineAfter(120, TimeUnit.SECONDS).generate(GenerateRequest.newBuilder().setConversationId(conversation)
                .setTokenIds(ids).setReturnTokenIds(true)
                .setSampling(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(12)).build());
    }

    /** The engine's own greedy answer, without a cache. */
    static List<Integer> engine(int[] prompt) {
        Generator.Result r = Generator.generate(mesh.model().model(), mesh.model().tokenizer(), prompt,
                new io.lightmesh.engine.generate.SamplingParams(0f, 0, 1f, 0L, 12, List.of(), 0), null);
        return Arrays.stream(r.tokens()).boxed().toList();
    }

    @Test
    void aConversationResumesFromItsPrefixAndAnswersAsWithoutTheCache() {
        int block = mesh.model().config().blockSize();
        int[] shared = tokens(1, 700), first = concat(shared, tokens(2, 20)), other = concat(shared, tokens(3, 33));
        GenerateResponse r1 = generate("conv-a", first);
        assertEquals(0, r1.getUsage().getCachedTokens());
        assertEquals(engine(first), r1.getTokenIdsList());

        GenerateResponse r2 = generate("conv-a", other); // same key: the worker that prefilled `first`
        assertEquals(shared.length / block * block, r2.getUsage().getCachedTokens(), "resumed at the last block boundary of the shared prefix");
        assertEquals(r2.getUsage().getCachedTokens(), r2.getStats().getCachedTokens());
        assertEquals(engine(other), r2.getTokenIdsList());

        int[] next = concat(first, r1.getTokenIdsList().stream().mapToInt(Integer::intValue).toArray(), tokens(4, 25));
        GenerateResponse r3 = generate("conv-a", next); // the next turn: from the end of the first prompt
        assertEquals(first.length, r3.getUsage().getCachedTokens());
        assertEquals(engine(next), r3.getTokenIdsList());
    }

    @Test
    void openAiChatReportsCachedTokensOnTheNextTurn() throws Exception {
        String model = mesh.model().dir().getFileName().toString();
        JsonArray messages = new JsonArray()
                .add(new JsonObject().put("role", "system").put("content", "You are a helpful assistant. Answer in one short sentence."))
                .add(new JsonObject().put("role", "user").put("content", "What is the capital of France?"));
        JsonObject turn1 = chat(model, messages);
        JsonObject u1 = turn1.getJsonObject("usage");
        assertEquals(0, u1.getJsonObject("prompt_tokens_details").getInteger("cached_tokens"));
        String answer = turn1.getJsonArray("choices").getJsonObject(0).getJsonObject("message").getString("content");
        messages.add(new JsonObject().put("role", "assistant").put("content", answer))
                .add(new JsonObject().put("role", "user").put("content", "And of Italy?"));
        JsonObject u2 = chat(model, messages).getJsonObject("usage"); // no conversation id: keyed by the chat's opening
        assertEquals(u1.getInteger("prompt_tokens"), u2.getJsonObject("prompt_tokens_details").getInteger("cached_tokens"),
                "the second turn starts from the end of the first turn's prompt");
        assertTrue(u2.getInteger("prompt_tokens") > u1.getInteger("prompt_tokens"));
        assertTrue(metric("lightmesh.prefix_cache.cached_tokens") >= u1.getInteger("prompt_tokens"));
        assertTrue(metric("lightmesh.prefix_cache.hits") >= 1);
        assertTrue(metric("lightmesh.prefix_cache.usage") > 0);
        long held = mesh.prefillers().stream().map(PrefillWorker::prefixCache).mapToLong(PrefixCache::bytes).sum();
        assertTrue(held > 0 && held <= 2 * (64L << 20));
    }

    static JsonObject chat(String model, JsonArray messages) throws Exception {
        HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + mesh.httpPort() + "/v1/chat/completions"))
                .timeout(Duration.ofSeconds(120)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(new JsonObject().put("model", model).put("messages", messages)
                        .put("temperature", 0).put("max_tokens", 12).encode())).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return new JsonObject(r.body());
    }

    /** A prefill metric summed over the workers. */
    static long metric(String name) {
        long sum = 0;
        for (MetricData m : prefillMetrics.collectAllMetrics()) {
            if (!m.getName().equals(name)) continue;
            var points = m.getType() == io.opentelemetry.sdk.metrics.data.MetricDataType.LONG_SUM ? m.getLongSumData().getPoints() : m.getLongGaugeData().getPoints();
            for (LongPointData p : points) sum += p.getValue();
        }
        return sum;
    }
}
