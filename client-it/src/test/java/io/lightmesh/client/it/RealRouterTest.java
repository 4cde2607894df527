package io.lightmesh.client.it;

import io.grpc.Server;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.lightmesh.client.ChatMessage;
import io.lightmesh.client.Completion;
import io.lightmesh.client.Delta;
import io.lightmesh.client.FinishReason;
import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.GenerationStream;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.client.LightMeshException;
import io.lightmesh.client.RetryPolicy;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.launcher.EmbeddedMesh;
import io.lightmesh.mesh.TestKafka;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
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
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The SDK and the OpenAI-compatible API against the real router: the mesh of mesh-launcher's EmbeddedMesh (router,
 * prefill and decode workers over loopback gRPC, a real KRaft Kafka broker) on a seeded synthetic model of the M1
 * architecture. The SDK is tried over a TCP socket and over the in-process transport; greedy answers must equal
 * the in-process engine's, token for token. Cancellation and deadlines must free the decode worker's state. The OpenAI
 * API is the one the mesh serves on the router's HTTP port (HttpFront).
 */
class RealRouterTest {
    private static final int MAX_IN_FLIGHT = 4;
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    static EmbeddedMesh mesh;
    static LightMeshClient socket;        // over TCP to the router's gRPC port
    static Server inProcessServer;        // the router's own services, served in-process
    static LightMeshClient inProcess;
    static String http;                   // base URL of the OpenAI API mounted in front of the router
    static final HttpClient httpClient = HttpClient.newHttpClient();

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        // the tiny shape with the fixture tokenizer's 2048 ids, so that text and chat requests can be tokenized
        SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Shape(2048, 64, 8, 4, 2, 16, 8, 4, 2, 48, 16), DType.F32, 11, false);
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) {
            java.nio.file.Files.copy(Path.of("../engine/src/test/resources/fixtures/tokenizer", f), model.resolve(f));
        }
        mesh = EmbeddedMesh.start(new EmbeddedMesh.Options(model, "127.0.0.1", 0, 0, kafka.bootstrapServers(), dir, 0, 1, 1,
                1L << 30, 32, "lightmesh.requests.v1", MAX_IN_FLIGHT, 32));
        assertTrue(mesh.awaitReady(60_000), () -> "mesh not ready: " + mesh.router().health());
        socket = LightMeshClient.builder().target(mesh.routerTarget()).defaultDeadline(Duration.ofSeconds(60)).build();
        String name = "router-" + System.nanoTime();
        InProcessServerBuilder sb = InProcessServerBuilder.forName(name);
        mesh.router().services().forEach(sb::addService);
        inProcessServer = sb.build().start();
        inProcess = LightMeshClient.builder().channel(InProcessChannelBuilder.forName(name).build())
                .defaultDeadline(Duration.ofSeconds(60)).build();

        http = "http://127.0.0.1:" + mesh.httpPort();   // the router's own HTTP port: health and the OpenAI API
    }

    @AfterAll
    static void stop() throws Exception {
        if (inProcess != null) inProcess.close();
        if (inProcessServer != null) inProcessServer.shutdownNow();
        if (socket != null) socket.close();
        if (mesh != null) mesh.close();
    }

    /** Every test leaves the mesh idle: no request admitted, no sequence state held. */
    @AfterEach
    void meshIsIdle() throws InterruptedException { awaitIdle(); }

    static void awaitIdle() throws InterruptedException {
        long until = System.currentTimeMillis() + 10_000;
        while (System.currentTimeMillis() < until) {
            if (idle()) return;
            Thread.sleep(50);
        }
        assertEquals(0, mesh.router().inFlight(), "requests still admitted by the router");
        for (var d : mesh.decoders()) {
            assertEquals(0, d.worker().liveSequences(), d.id() + " still holds sequences");
            assertEquals(0, d.worker().usedBytes(), d.id() + " still holds state bytes");
        }
    }

    static boolean idle() {
        return mesh.router().inFlight() == 0
                && mesh.decoders().stream().allMatch(d -> d.worker().liveSequences() == 0 && d.worker().usedBytes() == 0);
    }

    static int[] prompt(long seed, int len) { return new SplittableRandom(seed).ints(len, 0, 512).toArray(); }

    static GenerationRequest greedy(int[] prompt, int maxNew) {
        return GenerationRequest.tokens(prompt).temperature(0).maxTokens(maxNew).ignoreEos(true).returnTokenIds(true).build();
    }

    /** What the engine's own Generator (./lightmesh generate) produces for the same greedy request. */
    static List<Integer> engine(int[] prompt, int maxNew) {
        io.lightmesh.engine.generate.SamplingParams p =
                new io.lightmesh.engine.generate.SamplingParams(0f, 0, 1f, 0L, maxNew, List.of(), 0, true);
        int[] t = io.lightmesh.engine.generate.Generator.generate(mesh.model().model(), mesh.model().tokenizer(), prompt, p, null).tokens();
        return java.util.Arrays.stream(t).boxed().toList();
    }

    // ---- the SDK ----

    @Test
    void everyCallKindGivesTheEnginesTokensOverTcpAndInProcess() throws Exception {
        int[] p = prompt(1, 30);
        List<Integer> want = engine(p, 10);
        for (LightMeshClient client : List.of(socket, inProcess)) {
            Completion blocking = client.generate(greedy(p, 10));
            assertEquals(want, blocking.tokenIds());
            assertEquals(FinishReason.LENGTH, blocking.finishReason());
            assertEquals(30, blocking.usage().promptTokens());
            assertEquals(10, blocking.usage().completionTokens());
            assertTrue(blocking.stats().stateBytes() > 0, "mesh stats come through");

            assertEquals(want, client.generateAsync(greedy(p, 10)).get(60, TimeUnit.SECONDS).tokenIds());

            List<Delta> deltas = new ArrayList<>();
            try (GenerationStream s = client.stream(greedy(p, 10))) {
                for (Delta d : s) deltas.add(d);
            }
            assertEquals(want, Completion.of(deltas).tokenIds());
            assertEquals(FinishReason.LENGTH, deltas.getLast().finishReason());
            assertEquals(10, deltas.getLast().usage().completionTokens());

            assertEquals(want, collect(client.publisher(greedy(p, 10))).tokenIds());
        }
    }

    static Completion collect(Flow.Publisher<Delta> publisher) throws InterruptedException {
        List<Delta> got = new ArrayList<>();
        CountDownLatch done = new CountDownLatch(1);
        AtomicReference<Throwable> error = new AtomicReference<>();
        publisher.subscribe(new Flow.Subscriber<>() {
            Flow.Subscription sub;
            @Override public void onSubscribe(Flow.Subscription s) { sub = s; s.request(1); }
            @Override public void onNext(Delta d) { got.add(d); sub.request(1); }
            @Override public void onError(Throwable t) { error.set(t); done.countDown(); }
            @Override public void onComplete() { done.countDown(); }
        });
        assertTrue(done.await(60, TimeUnit.SECONDS));
        if (error.get() != null) throw new AssertionError(error.get());
        return Completion.of(got);
    }

    @Test
    void modelInfoAndHealth() {
        var info = socket.modelInfo();
        assertEquals("model", info.modelId());
        assertEquals("mesh", info.servingMode());
        assertEquals(32, info.defaultMaxNewTokens());
        assertEquals(info, inProcess.modelInfo());
        var health = socket.health();
        assertTrue(health.serving(), health.toString());
        assertTrue(health.components().stream().anyMatch(c -> c.name().equals("kafka") && c.reachable()));
    }

    @Test
    void invalidRequestIsInvalidArgumentAndNotRetried() {
        LightMeshException e = assertThrows(LightMeshException.class, () -> socket.generate(greedy(new int[] {1, 2, 99_999}, 4)));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
        assertTrue(e.description().contains("99999"), e.description());
        assertEquals(1, e.attempts());
    }

    @Test
    void closingAStreamEarlyFreesTheDecodeWorker() throws Exception {
        for (LightMeshClient client : List.of(socket, inProcess)) {
            try (GenerationStream s = client.stream(greedy(prompt(2, 20), 100_000))) {
                for (int i = 0; i < 3; i++) assertTrue(s.next().tokenIds().size() > 0);
                assertTrue(!idle(), "generating");
            }
            awaitIdle();
        }
    }

    @Test
    void cancellingAFutureOrASubscriptionFreesTheDecodeWorker() throws Exception {
        CompletableFuture<Completion> f = socket.generateAsync(greedy(prompt(3, 20), 100_000));
        awaitBusy();
        f.cancel(true);
        awaitIdle();

        CountDownLatch some = new CountDownLatch(3);
        socket.publisher(greedy(prompt(4, 20), 100_000)).subscribe(new Flow.Subscriber<>() {
            Flow.Subscription sub;
            @Override public void onSubscribe(Flow.Subscription s) { sub = s; s.request(Long.MAX_VALUE); }
            @Override public void onNext(Delta d) { some.countDown(); if (some.getCount() == 0) sub.cancel(); }
            @Override public void onError(Throwable t) {}
            @Override public void onComplete() {}
        });
        assertTrue(some.await(60, TimeUnit.SECONDS));
        awaitIdle();
    }

    static void awaitBusy() throws InterruptedException {
        long until = System.currentTimeMillis() + 30_000;
        while (System.currentTimeMillis() < until && mesh.decoders().stream().allMatch(d -> d.worker().liveSequences() == 0)) Thread.sleep(20);
    }

    @Test
    void deadlineEndsTheCallAndFreesTheDecodeWorker() throws Exception {
        LightMeshException e = assertThrows(LightMeshException.class, () -> socket.generate(
                greedy(prompt(5, 20), 100_000).toBuilder().deadline(Duration.ofMillis(1500)).build()));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
    }

    @Test
    void fullAdmissionQueueIsResourceExhaustedAndRetriedWithBackoff() throws Exception {
        List<GenerationStream> hogs = new ArrayList<>();
        try {
            for (int i = 0; i < MAX_IN_FLIGHT; i++) {
                GenerationStream s = socket.stream(greedy(prompt(10 + i, 10), 100_000));
                s.next();
                hogs.add(s);
            }
            try (LightMeshClient noRetry = LightMeshClient.builder().target(mesh.routerTarget()).retryPolicy(RetryPolicy.none()).build()) {
                LightMeshException e = assertThrows(LightMeshException.class, () -> noRetry.generate(greedy(prompt(20, 5), 2)));
                assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.code());
                assertTrue(e.retryable());
            }
            try (LightMeshClient patient = LightMeshClient.builder().target(mesh.routerTarget())
                    .retryPolicy(RetryPolicy.defaults().withMaxAttempts(50).withBackoff(Duration.ofMillis(50), Duration.ofMillis(200))).build()) {
                CompletableFuture<Completion> waiting = patient.generateAsync(greedy(prompt(21, 5), 3));
                Thread.sleep(300);
                assertTrue(!waiting.isDone(), "still retrying while the queue is full");
                hogs.removeFirst().close();
                Completion c = waiting.get(60, TimeUnit.SECONDS);
                assertEquals(engine(prompt(21, 5), 3), c.tokenIds());
            }
        } finally {
            hogs.forEach(GenerationStream::close);
        }
    }

    @Test
    void chatOnTheRealRouter() {
        Completion c = socket.generate(GenerationRequest.chat(ChatMessage.user("Hello")).maxTokens(8).temperature(0).build());
        assertTrue(c.usage().promptTokens() > 0);
        assertTrue(!c.text().contains("<think>"), "reasoning is parsed out of the text");
    }

    // ---- the OpenAI-compatible API in front of the router ----

    static HttpResponse<String> post(String path, JsonObject body) throws Exception {
        return httpClient.send(HttpRequest.newBuilder(URI.create(http + path)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body.encode())).build(), HttpResponse.BodyHandlers.ofString());
    }

    static JsonArray ids(int[] p) {
        JsonArray a = new JsonArray();
        for (int t : p) a.add(t);
        return a;
    }

    @Test
    void openAiModelsAndTokenCompletionsOnTheRealRouter() throws Exception {
        HttpResponse<String> models = httpClient.send(HttpRequest.newBuilder(URI.create(http + "/v1/models")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, models.statusCode());
        assertEquals(List.of("model"), new JsonObject(models.body()).getJsonArray("data").stream()
                .map(m -> ((JsonObject) m).getString("id")).toList());

        JsonObject req = new JsonObject().put("model", "model").put("prompt", ids(prompt(6, 12))).put("max_tokens", 6)
                .put("temperature", 0).put("ignore_eos", true);
        HttpResponse<String> r = post("/v1/completions", req);
        assertEquals(200, r.statusCode(), r.body());
        JsonObject body = new JsonObject(r.body());
        assertEquals("length", body.getJsonArray("choices").getJsonObject(0).getString("finish_reason"));
        assertEquals(12, body.getJsonObject("usage").getInteger("prompt_tokens"));
        assertEquals(6, body.getJsonObject("usage").getInteger("completion_tokens"));

        r = post("/v1/completions", req.copy().put("stream", true).put("stream_options", new JsonObject().put("include_usage", true)));
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(r.body().endsWith("data: [DONE]\n\n"), r.body());
        String[] events = r.body().split("\n\n");
        JsonObject usage = new JsonObject(events[events.length - 2].substring(6)).getJsonObject("usage");
        assertEquals(6, usage.getInteger("completion_tokens"));

        HttpResponse<String> bad = post("/v1/completions", req.copy().put("prompt", new JsonArray().add(1).add(99_999)));
        assertEquals(400, bad.statusCode(), "the router's INVALID_ARGUMENT");
        assertTrue(new JsonObject(bad.body()).getJsonObject("error").getString("message").contains("99999"));
        assertEquals(404, post("/v1/completions", req.copy().put("model", "gpt-4o")).statusCode());
    }

    @Test
    void openAiChatOnTheRealRouter() throws Exception {
        HttpResponse<String> r = post("/v1/chat/completions", new JsonObject().put("model", "model").put("max_tokens", 8)
                .put("messages", new JsonArray().add(new JsonObject().put("role", "user").put("content", "Hello"))));
        assertEquals(200, r.statusCode(), r.body());
        JsonObject message = new JsonObject(r.body()).getJsonArray("choices").getJsonObject(0).getJsonObject("message");
        assertEquals("assistant", message.getString("role"));
        assertTrue(new JsonObject(r.body()).getJsonObject("usage").getInteger("prompt_tokens") > 0, r.body());
    }

    /**
     * The official {@code openai} npm client (tools/openai-client-test) reads log-probabilities, several choices and
     * echoed prompt scores from the real router's HTTP API. Skipped when node or the client is missing, unless
     * LIGHTMESH_REQUIRE_NODE_TESTS=1.
     */
    @Test
    void officialOpenAiClientReadsLogprobsAndChoices() throws Exception {
        java.nio.file.Path scripts = Path.of("..", "tools", "openai-client-test").toAbsolutePath().normalize();
        boolean installed = java.nio.file.Files.isDirectory(scripts.resolve("node_modules/openai"));
        if ("1".equals(System.getenv("LIGHTMESH_REQUIRE_NODE_TESTS"))) assertTrue(installed, "npm ci in " + scripts);
        org.junit.jupiter.api.Assumptions.assumeTrue(installed, "the openai npm package is missing: run npm ci in tools/openai-client-test");
        ProcessBuilder pb = new ProcessBuilder("node", "test.mjs", http + "/v1").directory(scripts.toFile()).redirectErrorStream(true);
        pb.environment().put("LIGHTMESH_CHECKS", "models.list,logprobs and n,streamed logprobs,completions echo logprobs");
        Process p = pb.start();
        boolean done = p.waitFor(180, java.util.concurrent.TimeUnit.SECONDS);
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        if (!done) p.destroyForcibly();
        assertTrue(done, "node finished: " + out);
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("all 4 checks passed"), out);
    }
}
