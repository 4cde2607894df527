package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The four services as their Quarkus applications, each a process of its own, started as a deployment starts them
 * ({@code java -jar <module>/target/quarkus-app/quarkus-run.jar}, configured by {@code LIGHTMESH_*} variables or
 * {@code -Dlightmesh.*} properties; one expert shard through the launcher's {@code expert} command, which runs the
 * same application), against a real Kafka broker (KRaft): two expert shards, a decode and a prefill worker using
 * them, a router. The router's readiness must come up; a greedy request through its gRPC API must equal the
 * in-process engine token for token, in one trace that spans all four services (exported over OTLP by each
 * process's quarkus-opentelemetry SDK); an invalid one must get INVALID_ARGUMENT naming the field; SIGTERM must stop
 * every service cleanly.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class QuarkusServicesTest {
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    /** Where every service exports its spans (OTEL_EXPORTER_OTLP_ENDPOINT), as a collector would receive them. */
    static OtlpCollector otlp;
    static ServiceProcesses services;
    static Path model;
    static int routerGrpc, routerHttp, decodeHttp, prefillHttp;

    @BeforeAll
    static void start() throws Exception {
        model = dir.resolve("model");
        SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Shape(2048, 64, 8, 4, 2, 16, 8, 4, 2, 48, 16), DType.F32, 21, false);
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) {
            Files.copy(MeshTextAndChatTest.FIXTURE_TOKENIZER.resolve(f), model.resolve(f));
        }
        otlp = new OtlpCollector();
        services = new ServiceProcesses(dir, Map.of("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint(), "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf",
                "QUARKUS_OTEL_BSP_SCHEDULE_DELAY", "200ms"));   // spans exported within moments, not 5 s
        int e0 = KraftBroker.freePort(), e1 = KraftBroker.freePort(), d = KraftBroker.freePort();
        routerGrpc = KraftBroker.freePort();
        routerHttp = KraftBroker.freePort();
        decodeHttp = KraftBroker.freePort();
        prefillHttp = KraftBroker.freePort();
        String experts = "127.0.0.1:" + e0 + ",127.0.0.1:" + e1;
        // expert-0 and the decode worker take their settings from the environment, as a container would
        services.quarkusApp("expert-0", "expert-service", Map.of("LIGHTMESH_MODEL", model.toString(), "LIGHTMESH_SHARD", "0/2",
                "LIGHTMESH_HOST", "127.0.0.1", "LIGHTMESH_GRPC_PORT", "" + e0, "LIGHTMESH_HTTP_PORT", "" + KraftBroker.freePort(),
                "LIGHTMESH_EXPERT_SLOTS", "3"));
        // expert-1 through the launcher's single-service command, which runs the same Quarkus application
        launcher("expert-1", "expert", "--model", model.toString(), "--shard", "1/2", "--host", "127.0.0.1", "--grpc-port", "" + e1,
                "--http-port", "" + KraftBroker.freePort(), "--expert-slots", "0");
        expertPorts = new int[] {e0, e1};
        services.quarkusApp("decode", "decode-service", Map.of("LIGHTMESH_MODEL", model.toString(), "LIGHTMESH_EXPERTS", experts,
                "LIGHTMESH_HOST", "127.0.0.1", "LIGHTMESH_GRPC_PORT", "" + d, "LIGHTMESH_HTTP_PORT", "" + decodeHttp,
                "LIGHTMESH_ADVERTISE", "127.0.0.1:" + d, "LIGHTMESH_BUDGET_GIB", "1"));
        // the prefill worker and the router as -Dlightmesh.* system properties
        services.quarkusApp("prefill", "prefill-service", Map.of(), "-Dlightmesh.model=" + model, "-Dlightmesh.kafka=" + kafka.bootstrapServers(),
                "-Dlightmesh.experts=" + experts, "-Dlightmesh.host=127.0.0.1", "-Dlightmesh.http-port=" + prefillHttp);
        services.quarkusApp("router", "router", Map.of(), "-Dlightmesh.model=" + model, "-Dlightmesh.kafka=" + kafka.bootstrapServers(),
                "-Dlightmesh.decode=127.0.0.1:" + d, "-Dlightmesh.experts=" + experts, "-Dlightmesh.host=127.0.0.1",
                "-Dlightmesh.grpc-port=" + routerGrpc, "-Dlightmesh.http-port=" + routerHttp, "-Dlightmesh.poll-ms=300");
        services.awaitReady(routerHttp, 180_000);
    }

    static void launcher(String name, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(ServiceProcesses.jvm());
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(Arrays.asList(args));
        // the launcher passes LIGHTMESH_JAVA_OPTS on to the application it runs
        services.start(name, cmd, Map.of("LIGHTMESH_JAVA_OPTS", "-Xmx256m -XX:TieredStopAtLevel=1"));
    }

    @AfterAll
    static void stop() throws Exception {
        // each service's log kept for a look after the run (the temporary folder goes away)
        if (services != null) services.close("quarkus-services-logs");
        if (otlp != null) otlp.close();
    }

    @Test
    @Order(1)
    void readinessNamesEveryPartOfTheMesh() throws Exception {
        HttpResponse<String> r = ServiceProcesses.get(routerHttp, "/q/health/ready");
        assertEquals(200, r.statusCode(), r.body());
        for (String check : List.of("\"kafka\"", "\"prefill\"", "\"decode\"", "\"experts\"", "expert-0", "expert-1", "decode-0")) {
            assertTrue(r.body().contains(check), check + " in " + r.body());
        }
        HttpResponse<String> d = ServiceProcesses.get(decodeHttp, "/q/health/ready");
        assertEquals(200, d.statusCode(), d.body());
        assertTrue(d.body().contains("state_bytes_budget"), d.body());
        HttpResponse<String> p = ServiceProcesses.get(prefillHttp, "/q/health/ready");
        assertEquals(200, p.statusCode(), p.body());
        assertTrue(p.body().contains("\"prefill\"") && p.body().contains("Kafka"), "the worker's and Kafka's checks: " + p.body());
        // each worker's engine path in its health data (backend auto: the host's arrays here, the device on a GPU)
        for (String body : List.of(d.body(), p.body())) {
            String b = body.replace(" ", "");
            assertTrue(b.contains("\"decode_path\":\"host-arrays\"") || b.contains("\"decode_path\":\"device-resident\""), body);
            assertTrue(b.contains("\"experts\":\"remote\"") && b.contains("\"micro_batching\""), body);
        }
    }

    static int[] expertPorts;

    @Test
    @Order(1)
    void expertShardsReportTheirSlotsAndTakeExpertsWithinThem() throws Exception {
        for (int i = 0; i < 2; i++) {
            ManagedChannel ch = Grpc.channel("127.0.0.1:" + expertPorts[i]);
            try {
                io.lightmesh.proto.v1.ExpertShardInfo info = io.lightmesh.proto.v1.WorkerGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                        .describe(io.lightmesh.proto.v1.DescribeRequest.getDefaultInstance()).getExpertShard();
                int share = info.getNumLayers() * info.getNumExperts() / 2; // round-robin share of 2 shards
                assertEquals(share, info.getSlotsUsed());
                assertEquals(share + (i == 0 ? 3 : 0), info.getSlotCapacity(), "lightmesh.expert-slots: extra copies beyond the share");
                assertEquals(info.getNumLayers() * info.getNumExperts(), info.getTokensCount());
            } finally {
                Grpc.shutdown(ch);
            }
        }
        // expert-1 has no free slot: a load is refused with RESOURCE_EXHAUSTED
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + expertPorts[1]);
        try {
            io.grpc.StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(io.grpc.StatusRuntimeException.class, () ->
                    io.lightmesh.proto.v1.ExpertGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS).loadExperts(
                            io.lightmesh.proto.v1.LoadExpertsRequest.newBuilder().addExperts(io.lightmesh.proto.v1.LayerExperts.newBuilder()
                                    .setLayer(0).addExperts(0)).build()));
            assertEquals(io.grpc.Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
        } finally {
            Grpc.shutdown(ch);
        }
    }

    @Test
    @Order(2)
    void greedyGenerateThroughTheRouterEqualsTheEngine() throws Exception {
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + routerGrpc);
        try (MeshModel m = MeshModel.load(model, new ReferenceOps())) {
            String prompt = "Quarkus services on their own";
            GenerateResponse r = InferenceGrpc.newBlockingStub(ch).withDeadlineAfter(120, TimeUnit.SECONDS).generate(GenerateRequest.newBuilder()
                    .setPrompt(prompt).setReturnTokenIds(true)
                    .setSampling(SamplingParams.newBuilder().setTemperature(0).setMaxNewTokens(12)).build());
            Generator.Result e = Generator.generate(m.model(), m.tokenizer(), m.tokenizer().encode(prompt),
                    new io.lightmesh.engine.generate.SamplingParams(0f, 0, 1f, 0, 12, List.of(), 0), null);
            assertFalse(r.getTokenIdsList().isEmpty());
            assertEquals(Arrays.stream(e.tokens()).boxed().toList(), r.getTokenIdsList());
            assertEquals(e.text(), r.getText());
        } finally {
            Grpc.shutdown(ch);
        }
        // one trace: the router's request span, the prefill, the decode and expert calls, each from its own process
        Map<String, String> expected = Map.of("lightmesh-router", "lightmesh.generate", "lightmesh-prefill", "lightmesh.prefill",
                "lightmesh-decode", "lightmesh.decode", "lightmesh-expert", "lightmesh.expert compute");
        long until = System.currentTimeMillis() + 30_000;
        boolean spansAll = false;
        while (!spansAll && System.currentTimeMillis() < until) {
            Thread.sleep(200);
            spansAll = otlp.spans.stream().filter(s -> s.name().equals("lightmesh.generate")).map(OtlpCollector.Span::traceId)
                    .anyMatch(trace -> expected.entrySet().stream().allMatch(x -> otlp.spans.stream().anyMatch(s ->
                            s.traceId().equals(trace) && s.service().equals(x.getKey()) && s.name().equals(x.getValue()))));
        }
        assertTrue(spansAll, () -> "no trace with " + expected + " among " + otlp.spans.stream()
                .map(s -> s.service() + "/" + s.name() + "@" + s.traceId().substring(0, 8)).distinct().toList());
    }

    @Test
    @Order(3)
    void anInvalidRequestGetsInvalidArgumentNamingTheField() {
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + routerGrpc);
        try {
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> InferenceGrpc.newBlockingStub(ch)
                    .withDeadlineAfter(30, TimeUnit.SECONDS).generate(GenerateRequest.newBuilder().setPrompt("Hello")
                            .setSampling(SamplingParams.newBuilder().setTemperature(-1)).build()));
            assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
            assertTrue(e.getStatus().getDescription().contains("sampling.temperature"), e.getStatus().getDescription());
        } finally {
            Grpc.shutdown(ch);
        }
    }

    @Test
    @Order(4)
    void theRouterServesTheOpenAiApi() throws Exception {
        HttpResponse<String> c = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + routerHttp + "/v1/completions"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString("{\"model\": \"model\", \"prompt\": \"Hello\", \"max_tokens\": 4, \"temperature\": 0}")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, c.statusCode(), c.body());
        assertTrue(c.body().contains("\"completion_tokens\""), c.body());
    }

    @Test
    @Order(5)
    void sigtermStopsEveryServiceCleanly() throws Exception {
        Map<String, String> goodbye = Map.of("router", "router: stopping", "prefill", "prefill worker: stopping",
                "decode", "decode worker: stopping", "expert-0", "expert shard: stopping", "expert-1", "expert shard: stopping");
        for (String name : List.of("router", "prefill", "decode", "expert-0", "expert-1")) {
            Process p = services.process(name);
            List<ProcessHandle> children = p.descendants().toList();   // expert-1: the application the launcher runs
            p.destroy(); // SIGTERM
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), name + " still running 60 s after SIGTERM:\n" + services.logs());
            for (ProcessHandle c : children) assertFalse(c.isAlive(), name + "'s child " + c.pid() + " outlived it");
            assertTrue(services.log(name).contains(goodbye.get(name)), name + " did not shut down through Quarkus:\n" + services.logs());
        }
    }
}
