package io.lightmesh.helm;

import io.grpc.ManagedChannel;
import io.grpc.stub.StreamObserver;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.FreePort;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The chart's rendered pods, started as local processes ({@link LocalPods}: their commands and env, service names
 * resolved to loopback addresses through an emulated cluster DNS) against a real Kafka broker (the chart's
 * external-Kafka mode), with the placement controller ({@link RenderedMeshTest}) and without
 * ({@link RenderedMeshWithoutControllerTest}): the mesh becomes ready and answers requests with no host list anywhere, only the headless
 * Services' names (discovery): the router's placement controller follows the discovered shards and the workers follow
 * its placement (the chart's default), or each worker discovers the shards itself. Then pods come and go as a Deployment and a StatefulSet scaling and replacing them
 * would make them: a second decode worker and a second expert shard started later are used without restarting
 * anyone; the decode worker holding a request and the first shard, stopped mid-request, are dropped, and the request
 * completes with the same greedy tokens.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class RenderedMesh {
    /** Per test class (JUnit injects a static one before the class's @BeforeAll). */
    @TempDir static Path root;
    Path dir;
    TestKafka kafka;
    LocalPods pods;
    List<HasMetadata> objects;
    LocalPods.Pod router, decode0, experts0, prefill0;
    int routerGrpc;
    static final String PROMPT = "Pods come and go";
    static final int TOKENS = 160;
    List<Integer> baseline;

    /** Whether the router runs the placement controller (placement.controller), the workers following its placement. */
    abstract boolean controller();

    @BeforeAll
    void start() throws Exception {
        dir = root;
        Path models = Files.createDirectories(dir.resolve("node-models"));
        Path model = models.resolve("model");
        SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Shape(2048, 64, 8, 4, 2, 16, 8, 4, 2, 48, 16), DType.F32, 21, false);
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) {
            Files.copy(Chart.repo().resolve("engine/src/test/resources/fixtures/tokenizer").resolve(f), model.resolve(f));
        }
        kafka = new TestKafka(4).start();
        routerGrpc = FreePort.next();
        String jvm = "-Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC";
        objects = Chart.parse(Chart.template(List.of(),
                "kafka.enabled", "false", "kafka.bootstrapServers", kafka.bootstrapServers(), "kafka.partitions", "4",
                "model.source", "hostPath", "model.hostPath.path", models.toString(), "model.subPath", "model",
                "router.grpcPort", "" + routerGrpc, "router.httpPort", "" + FreePort.next(), "router.jvmOptions", jvm, "router.settings.pollMs", "300",
                "prefill.httpPort", "" + FreePort.next(), "prefill.backend", "reference", "prefill.jvmOptions", jvm,
                "decode.grpcPort", "" + FreePort.next(), "decode.httpPort", "" + FreePort.next(), "decode.backend", "reference", "decode.jvmOptions", jvm,
                "decode.budgetGib", "1",
                "experts.shards", "1", "experts.replicas", "1", "experts.grpcPort", "" + FreePort.next(), "experts.httpPort", "" + FreePort.next(),
                "experts.backend", "reference", "experts.jvmOptions", jvm,
                "apiKey.value", "k8s-test-key", "placement.controller", String.valueOf(controller())));
        assertTrue(TypedChecks.all(objects).isEmpty(), () -> String.join("\n", TypedChecks.all(objects)));
        pods = new LocalPods(objects, dir);
        // all at once, as helm install creates them: each waits for what it needs through discovery
        experts0 = pods.start("experts", "lm-lightmesh-experts-0", 0);
        decode0 = pods.start("decode", "lm-lightmesh-decode-7d9f-a1", 0);
        prefill0 = pods.start("prefill", "lm-lightmesh-prefill-5c4b-b1", 0);
        router = pods.start("router", "lm-lightmesh-router-6f8d-c1", 0);
        await(240, () -> pods.ready(router), "router ready");
        // the workers' experts: the controller's placement, or the shards they discover themselves
        for (LocalPods.Pod w : List.of(prefill0, decode0)) {
            String log = Files.readString(w.log());
            assertTrue(controller() ? log.contains("from the controller at") : log.contains("expert shards discovered over [dns:"), w.name() + ":" + pods.logs());
        }
    }

    void await(int seconds, BooleanSupplier condition, String what) throws InterruptedException {
        long until = System.currentTimeMillis() + seconds * 1000L;
        while (!condition.getAsBoolean()) {
            for (LocalPods.Pod p : pods.pods.values()) {
                if (!p.process().isAlive() && p.process().exitValue() != 0 && p.process().exitValue() != 143) {
                    throw new AssertionError(p.name() + " failed while waiting for " + what + ":" + pods.logs());
                }
            }
            if (System.currentTimeMillis() > until) throw new AssertionError("no " + what + " within " + seconds + " s:" + pods.logs());
            Thread.sleep(250);
        }
    }

    @AfterAll
    void stop() throws Exception {
        if (pods != null) pods.close();
        if (kafka != null) kafka.close();
    }

    static GenerateRequest request() { return request(TOKENS); }

    static GenerateRequest request(int tokens) {
        return GenerateRequest.newBuilder().setPrompt(PROMPT).setReturnTokenIds(true)
                .setSampling(SamplingParams.newBuilder().setTemperature(0).setMaxNewTokens(tokens).setIgnoreEos(true)).build();
    }

    /** Long enough that the decode worker holding it is still decoding when it is stopped. */
    static final int LONG = 3000;

    static InferenceGrpc.InferenceBlockingStub stub(ManagedChannel ch) {
        return InferenceGrpc.newBlockingStub(ch).withCallCredentials(new io.grpc.CallCredentials() {
            @Override public void applyRequestMetadata(RequestInfo info, java.util.concurrent.Executor ex, MetadataApplier applier) {
                io.grpc.Metadata m = new io.grpc.Metadata();
                m.put(io.grpc.Metadata.Key.of("authorization", io.grpc.Metadata.ASCII_STRING_MARSHALLER), "Bearer k8s-test-key");
                applier.apply(m);
            }
        });
    }

    @Test
    @Order(1)
    void theRenderedMeshServesRequestsFoundByDiscoveryOnly() throws Exception {
        // the OpenAI API, with the key from the chart's Secret
        HttpResponse<String> c = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://" + router.ip() + ":" + router.httpPort() + "/v1/completions"))
                        .header("Content-Type", "application/json").header("Authorization", "Bearer k8s-test-key")
                        .POST(HttpRequest.BodyPublishers.ofString("{\"model\": \"model\", \"prompt\": \"Hello\", \"max_tokens\": 4, \"temperature\": 0}")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, c.statusCode(), c.body());
        assertTrue(c.body().matches("(?s).*\"completion_tokens\" *: *[1-9].*"), c.body());
        // gRPC: the greedy answer every later request must reproduce
        ManagedChannel ch = Grpc.channel(router.ip() + ":" + routerGrpc);
        try {
            GenerateResponse r = stub(ch).withDeadlineAfter(120, TimeUnit.SECONDS).generate(request());
            baseline = r.getTokenIdsList();
            assertEquals(TOKENS, baseline.size());
        } finally {
            Grpc.shutdown(ch);
        }
        String ready = pods.get(router, "/q/health/ready").body();
        assertTrue(ready.contains("lm-lightmesh-decode-7d9f-a1") && ready.contains("lm-lightmesh-experts-0"), "found by discovery: " + ready);
    }

    @Test
    @Order(2)
    void everyServiceServesTheMetricsToScaleOn() throws Exception {
        String decode = pods.get(decode0, "/q/metrics").body();
        assertTrue(decode.contains("lightmesh_decode_sequences_active"), decode);
        assertTrue(decode.contains("lightmesh_decode_state_budget_bytes{") && decode.contains("lightmesh_decode_state_used_bytes{"), decode);
        String experts = pods.get(experts0, "/q/metrics").body();
        assertTrue(experts.matches("(?s).*lightmesh_expert_tokens_total\\{[^}]*lightmesh_expert=\"\\d+\"[^}]*} [1-9].*"), experts);
        String prefill = pods.get(prefill0, "/q/metrics").body();
        assertTrue(prefill.contains("lightmesh_prefill_consumer_lag{"), prefill);
        assertTrue(prefill.contains("lightmesh_moe_tokens_total{"), "per-(layer, expert) load seen by the workers: " + prefill);
        String r = pods.get(router, "/q/metrics").body();
        assertTrue(r.contains("lightmesh_router_queue_depth") && r.contains("lightmesh_request_time_to_first_token_seconds"), r);
        if (controller()) {
            // the placement controller's: what the shards' autoscaler follows (autoscaling.yaml), and the expert load
            assertTrue(r.matches("(?s).*\nlightmesh_expert_shards_desired [1-9].*"), r);
            assertTrue(r.contains("lightmesh_expert_load_per_second{") && r.contains("lightmesh_placement_version"), r);
        } else {
            assertFalse(r.contains("lightmesh_expert_shards_desired"), "no controller: " + r);
        }
    }

    @Test
    @Order(3)
    void podsThatJoinAreUsedAndPodsThatLeaveAreDroppedWithoutLosingTheRequest() throws Exception {
        // scale up: a second decode worker (Deployment) and a second shard pod (StatefulSet index 1: a replica of shard 0/1)
        LocalPods.Pod decode1 = pods.start("decode", "lm-lightmesh-decode-7d9f-a2", 0);
        LocalPods.Pod experts1 = pods.start("experts", "lm-lightmesh-experts-1", 1);
        await(180, () -> {
            try {
                String body = pods.get(router, "/q/health/ready").body();
                return body.contains("lm-lightmesh-decode-7d9f-a2") && body.contains("lm-lightmesh-experts-1") && pods.ready(experts1);
            } catch (Exception e) {
                return false;
            }
        }, "the new decode worker and shard known to the router (no restart)");

        // a long request in flight; then the decode worker holding it and the first shard go away (SIGTERM, as on scale-down)
        ManagedChannel ch = Grpc.channel(router.ip() + ":" + routerGrpc);
        try {
            List<Integer> tokens = new ArrayList<>();
            CompletableFuture<GenerateChunk> last = new CompletableFuture<>();
            CountDownLatch firstToken = new CountDownLatch(1);
            InferenceGrpc.newStub(ch).withCallCredentials(stub(ch).getCallOptions().getCredentials()).withDeadlineAfter(300, TimeUnit.SECONDS)
                    .generateStream(request(LONG), new StreamObserver<>() {
                        @Override public void onNext(GenerateChunk c) {
                            synchronized (tokens) { tokens.addAll(c.getTokenIdsList()); }
                            if (!c.getTokenIdsList().isEmpty()) firstToken.countDown();
                            if (c.hasUsage()) last.complete(c);
                        }
                        @Override public void onError(Throwable t) { last.completeExceptionally(t); }
                        @Override public void onCompleted() { last.complete(null); }
                    });
            assertTrue(firstToken.await(120, TimeUnit.SECONDS), "no first token" + pods.logs());
            LocalPods.Pod[] holder = {null};
            await(10, () -> {
                for (LocalPods.Pod d : List.of(decode0, decode1)) {
                    try {
                        if (pods.get(d, "/q/health/ready").body().matches("(?s).*\"active_sequences\" *: *[1-9].*")) holder[0] = d;
                    } catch (Exception e) {
                        // not answering: not the holder
                    }
                }
                return holder[0] != null;
            }, "the decode worker holding the request");
            pods.stop(experts0);
            pods.stop(holder[0]);
            GenerateChunk end = last.get(300, TimeUnit.SECONDS);
            assertEquals(LONG, tokens.size());
            assertTrue(end.getStats().getResumes() >= 1, "the lost decode worker's request resumed on the other: " + end.getStats());
            // the same greedy tokens as the survivors give without interruption
            GenerateResponse whole = stub(ch).withDeadlineAfter(300, TimeUnit.SECONDS).generate(request(LONG));
            assertEquals(whole.getTokenIdsList(), tokens, "the resumed request's tokens equal an uninterrupted run's");
            assertEquals(baseline, whole.getTokenIdsList().subList(0, TOKENS));
            // the shard started later took over the experts; the survivors serve the next request alone
            GenerateResponse again = stub(ch).withDeadlineAfter(120, TimeUnit.SECONDS).generate(request());
            assertEquals(baseline, again.getTokenIdsList());
            String shardMetrics = pods.get(experts1, "/q/metrics").body();
            assertTrue(shardMetrics.matches("(?s).*lightmesh_expert_tokens_total\\{[^}]*} [1-9].*"), "the new shard computed experts: " + shardMetrics);
            LocalPods.Pod gone = holder[0];
            await(60, () -> {
                try {
                    String body = pods.get(router, "/q/health/ready").body();
                    return !body.contains("lm-lightmesh-experts-0") && (gone == null || !body.contains(gone.name()));
                } catch (Exception e) {
                    return false;
                }
            }, "the stopped pods dropped from the router's view");
            assertFalse(experts0.process().isAlive());
        } finally {
            Grpc.shutdown(ch);
        }
    }
}
