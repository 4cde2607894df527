package io.lightmesh.launcher.chaos;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.launcher.EmbeddedMesh;
import io.lightmesh.launcher.TestMesh;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.router.RouterCore;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Overload (real Kafka, real gRPC, the router's OpenAI API over HTTP, the demo model): an admission limit of 4
 * requests in flight and a decode worker whose state budget holds only 2 of them. Ten times the limit at once: the
 * excess is refused at once with 429 and Retry-After (RESOURCE_EXHAUSTED with a retry-after trailer on gRPC), every
 * request gets an answer (none lost), and every admitted one completes with the engine's tokens, the decode budget
 * making the admitted ones queue (never more states than fit) rather than fail or run out of memory. The figures
 * under a minute of overload come from {@link OverloadBench} (RELIABILITY.md).
 */
@org.junit.jupiter.api.TestMethodOrder(org.junit.jupiter.api.MethodOrderer.OrderAnnotation.class)
class OverloadTest {
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    @RegisterExtension static final TestMesh running = new TestMesh();
    static EmbeddedMesh mesh;
    static Expected expected;
    static final int LIMIT = 4, MAX_TOKENS = 8;
    static long budget;

    @BeforeAll
    static void start() throws Exception {
        Path model = ChaosMeshTest.repo().resolve("models/demo");
        expected = new Expected(model, "reference");
        // room for the states of two requests of the load (prompt of at most ~16 tokens plus MAX_TOKENS), not four
        budget = 2 * StateCodec.serialisedBytes(io.lightmesh.engine.config.ConfigLoader.load(model.resolve("config.json")), 16 + MAX_TOKENS) + 1024;
        mesh = running.ready(EmbeddedMesh.start(new EmbeddedMesh.Options(model, "127.0.0.1", 0, 0, kafka.bootstrapServers(), dir, 2, 1, 1,
                budget, 32, "lightmesh.requests.v1", LIMIT, 64, "reference"), s -> OpenTelemetry.noop()));
    }

    @AfterAll
    static void stop() throws Exception {
        if (expected != null) expected.close();
    }

    @Test @org.junit.jupiter.api.Order(1)
    void tenTimesTheLimitAtOnceRefusesTheExcessWith429AndCompletesTheAdmittedCorrectly() throws Exception {
        ChaosLoad load = new ChaosLoad(expected, "demo", MAX_TOKENS, 120_000);
        List<String> url = List.of("http://127.0.0.1:" + mesh.httpPort());
        int n = 10 * LIMIT;
        ExecutorService pool = Executors.newFixedThreadPool(n);
        CountDownLatch go = new CountDownLatch(1);
        AtomicBoolean running = new AtomicBoolean(true);
        AtomicInteger maxLive = new AtomicInteger();
        AtomicInteger maxUsedOverBudget = new AtomicInteger();
        Thread watch = Thread.ofPlatform().daemon().start(() -> {
            while (running.get()) {
                var w = mesh.decoders().getFirst().worker();
                maxLive.accumulateAndGet(w.liveSequences(), Math::max);
                if (w.usedBytes() > budget) maxUsedOverBudget.incrementAndGet();
                try { Thread.sleep(5); } catch (InterruptedException e) { return; }
            }
        });
        List<Future<ChaosLoad.Outcome>> answers = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int seq = i;
            answers.add(pool.submit(() -> {
                go.await();
                return load.run(seq, "overload", () -> url);
            }));
        }
        go.countDown();
        List<ChaosLoad.Outcome> outcomes = new ArrayList<>();
        for (Future<ChaosLoad.Outcome> f : answers) outcomes.add(f.get(180, TimeUnit.SECONDS)); // every request answered
        running.set(false);
        watch.join();
        pool.shutdown();
        int right = 0, refused = 0;
        for (ChaosLoad.Outcome o : outcomes) {
            switch (o.kind()) {
                case RIGHT -> right++;
                case FAILED -> {
                    assertTrue(o.detail().startsWith("HTTP 429 (Retry-After 1) rate_limit_exceeded"), o.detail());
                    assertTrue(o.millis() < 5_000, "refused at once, not queued: " + o.millis() + " ms");
                    refused++;
                }
                default -> throw new AssertionError(o.kind() + " " + o.shape() + ": " + o.detail());
            }
        }
        assertEquals(n, right + refused, "nothing lost");
        assertTrue(right >= LIMIT, "at least the first " + LIMIT + " admitted: " + right);
        assertTrue(refused >= n / 2, "the excess refused: " + refused + " of " + n);
        assertEquals(0, maxUsedOverBudget.get(), "the decode worker never held more state than its budget");
        assertTrue(maxLive.get() <= 2, "at most two states fit the budget; the other admitted requests queued: " + maxLive.get());
        assertEquals(0, mesh.router().inFlight(), "every admitted request left the router");
    }

    // its streams are cancelled, two of them while their prefill tasks wait for decode room; Order(4) follows it
    @Test @org.junit.jupiter.api.Order(3)
    void aFullRouterRefusesAGrpcCallWithResourceExhaustedAndARetryAfterTrailer() throws Exception {
        ManagedChannel ch = Grpc.channel(mesh.routerTarget());
        List<io.grpc.Context.CancellableContext> held = new ArrayList<>();
        try {
            // fill the router: LIMIT long streams (each fits the decode budget alone; the others wait for room)
            List<Iterator<GenerateChunk>> streams = new ArrayList<>();
            for (int i = 0; i < LIMIT; i++) {
                io.grpc.Context.CancellableContext c = io.grpc.Context.current().withCancellation();
                held.add(c);
                int seq = i;
                streams.add(c.call(() -> InferenceGrpc.newBlockingStub(ch).withDeadlineAfter(120, TimeUnit.SECONDS)
                        .generateStream(GenerateRequest.newBuilder().setPrompt("Fill the router " + seq)
                                .setSampling(SamplingParams.newBuilder().setTemperature(0).setMaxNewTokens(300).setIgnoreEos(true)).build())));
            }
            long until = System.currentTimeMillis() + 30_000;
            while (mesh.router().inFlight() < LIMIT && System.currentTimeMillis() < until) Thread.sleep(10);
            assertEquals(LIMIT, mesh.router().inFlight(), "the router is full");
            long t0 = System.nanoTime();
            StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class, () ->
                    InferenceGrpc.newBlockingStub(ch).withDeadlineAfter(60, TimeUnit.SECONDS).generate(GenerateRequest.newBuilder()
                            .setPrompt("One too many").setSampling(SamplingParams.newBuilder().setTemperature(0).setMaxNewTokens(4)).build()));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode(), e.toString());
            assertTrue(e.getStatus().getDescription().contains("admission queue full"), e.getStatus().getDescription());
            assertNotNull(e.getTrailers());
            assertEquals("1", e.getTrailers().get(RouterCore.RETRY_AFTER));
            assertTrue(ms < 5_000, "refused at once: " + ms + " ms");
        } finally {
            for (io.grpc.Context.CancellableContext c : held) c.cancel(null);
            Grpc.shutdown(ch);
        }
        long until = System.currentTimeMillis() + 30_000;
        while (mesh.router().inFlight() > 0 && System.currentTimeMillis() < until) Thread.sleep(50);
        assertEquals(0, mesh.router().inFlight(), "the cancelled streams left the router");
    }

    /**
     * Issue 13: after streams were cancelled while their prefill tasks waited for decode room, the prefill worker took
     * those tasks again and the decode worker reserved room for them (cancelled, so never used) until the reservation's
     * 30 s TTL: the next requests found the budget full, and a run of them once hung to its deadline. Now nothing is
     * reserved for a cancelled request: the budget is all free again well within that TTL, and a request completes.
     */
    @Test @org.junit.jupiter.api.Order(4)
    void aRequestAfterCancelledQueuedStreamsCompletesAndTheirRoomIsGivenBack() throws Exception {
        var worker = mesh.decoders().getFirst().worker();
        ManagedChannel ch = Grpc.channel(mesh.routerTarget());
        try {
            long t0 = System.nanoTime();
            var r = InferenceGrpc.newBlockingStub(ch).withDeadlineAfter(60, TimeUnit.SECONDS).generate(GenerateRequest.newBuilder()
                    .setPrompt("After the cancelled ones").setSampling(SamplingParams.newBuilder().setTemperature(0).setMaxNewTokens(4).setIgnoreEos(true)).build());
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertEquals(4, r.getUsage().getCompletionTokens(), r.toString());
            assertTrue(ms < 20_000, "served without waiting out a reservation's TTL (30 s): " + ms + " ms");
        } finally {
            Grpc.shutdown(ch);
        }
        // the cancelled streams' tasks are taken again within the prefill worker's retry pause (50 ms); a reservation
        // for them would hold room for 30 s
        long until = System.currentTimeMillis() + 10_000;
        while (worker.usedBytes() > 0 && System.currentTimeMillis() < until) Thread.sleep(50);
        assertEquals(0, worker.usedBytes(), "no room held for cancelled requests: " + worker.workerInfo().getLoad());
        assertEquals(0, mesh.router().inFlight());
    }

    @Test @org.junit.jupiter.api.Order(2)
    void aRequestWhoseStateNoDecodeWorkerCanHoldIsRefusedAtOnceNotQueued() throws Exception {
        mesh.router().refresh(); // the decode worker's budget known
        long t0 = System.nanoTime();
        java.net.http.HttpResponse<String> r = java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
                        java.net.URI.create("http://127.0.0.1:" + mesh.httpPort() + "/v1/completions")).header("Content-Type", "application/json")
                        .POST(java.net.http.HttpRequest.BodyPublishers.ofString("{\"model\": \"demo\", \"prompt\": \"Too long\", \"max_tokens\": 5000}")).build(),
                java.net.http.HttpResponse.BodyHandlers.ofString());
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(400, r.statusCode(), r.body());
        assertTrue(r.body().contains("bytes of decode state") && r.body().contains("the largest decode worker holds " + budget + " bytes"), r.body());
        assertTrue(ms < 5_000, "refused at once: " + ms + " ms");
        assertEquals(0, mesh.router().inFlight());
    }
}
