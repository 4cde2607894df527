package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import io.lightmesh.client.Completion;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.client.LightMeshException;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.HealthRequest;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.ServingStatus;
import io.lightmesh.proto.v1.TokenizeRequest;
import org.apache.kafka.common.test.KafkaClusterTestKit;
import org.apache.kafka.common.test.TestKitNodes;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every service as a process of its own, started the way a deployment starts them ({@code java ... Main router|
 * prefill|decode|expert} with flags and LIGHTMESH_* variables), against a real Kafka broker: two expert shards, a
 * decode and a prefill worker using them, a router with an API key. A text request over gRPC must equal the engine's
 * Generator, and the router's HTTP port must serve health and the OpenAI API; both APIs want the key, health does not.
 */
class StandaloneServicesTest {
    @TempDir static Path dir;
    static KafkaClusterTestKit kafka;
    static final List<Process> processes = new ArrayList<>();
    static Path model;
    static int routerGrpc, routerHttp;
    static final String API_KEY = "lm-test-key";

    @BeforeAll
    static void start() throws Exception {
        model = dir.resolve("model");
        SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Shape(2048, 64, 8, 4, 2, 16, 8, 4, 2, 48, 16), DType.F32, 21, false);
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) {
            Files.copy(MeshTextAndChatTest.FIXTURE_TOKENIZER.resolve(f), model.resolve(f));
        }
        kafka = new KafkaClusterTestKit.Builder(new TestKitNodes.Builder().setCombined(true).setNumBrokerNodes(1).setNumControllerNodes(1).build())
                .setConfigProp("group.initial.rebalance.delay.ms", "0")
                .setConfigProp("offsets.topic.replication.factor", "1")
                .setConfigProp("offsets.topic.num.partitions", "4").build();
        kafka.format();
        kafka.startup();
        kafka.waitForReadyBrokers();
        int e0 = KraftBroker.freePort(), e1 = KraftBroker.freePort(), d = KraftBroker.freePort();
        routerGrpc = KraftBroker.freePort();
        routerHttp = KraftBroker.freePort();
        String experts = "127.0.0.1:" + e0 + ",127.0.0.1:" + e1;
        service("expert-0", List.of(), "expert", "--model", model.toString(), "--shard", "0/2", "--host", "127.0.0.1", "--grpc-port", "" + e0);
        service("expert-1", List.of(), "expert", "--model", model.toString(), "--shard", "1/2", "--host", "127.0.0.1", "--grpc-port", "" + e1);
        // the decode worker takes its settings from the environment, as a container would
        service("decode", List.of("LIGHTMESH_MODEL=" + model, "LIGHTMESH_EXPERTS=" + experts, "LIGHTMESH_HOST=127.0.0.1",
                "LIGHTMESH_GRPC_PORT=" + d, "LIGHTMESH_ADVERTISE=127.0.0.1:" + d, "LIGHTMESH_BUDGET_GIB=1"), "decode");
        service("prefill", List.of(), "prefill", "--model", model.toString(), "--kafka", kafka.bootstrapServers(), "--experts", experts);
        service("router", List.of(), "router", "--model", model.toString(), "--kafka", kafka.bootstrapServers(), "--decode", "127.0.0.1:" + d,
                "--experts", experts, "--host", "127.0.0.1", "--grpc-port", "" + routerGrpc, "--http-port", "" + routerHttp, "--poll-ms", "300",
                "--api-key", API_KEY);
        HttpClient http = HttpClient.newHttpClient();
        long until = System.currentTimeMillis() + 120_000;
        int status = -1;
        String body = "";
        while (System.currentTimeMillis() < until) {
            for (Process p : processes) assertTrue(p.isAlive(), () -> "a service exited: " + logs());
            try {
                HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + routerHttp + "/q/health/ready")).build(),
                        HttpResponse.BodyHandlers.ofString());
                status = r.statusCode();
                body = r.body();
                if (status == 200) break;
            } catch (java.io.IOException e) {
                // not listening yet
            }
            Thread.sleep(500);
        }
        assertEquals(200, status, "router ready: " + body + "\n" + logs());
    }

    static void service(String name, List<String> env, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx256m",
                "-XX:TieredStopAtLevel=1", "--add-modules", "jdk.incubator.vector", "-cp", System.getProperty("java.class.path"),
                Main.class.getName()));
        cmd.addAll(Arrays.asList(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve(name + ".log").toFile());
        pb.environment().put("LIGHTMESH_BACKEND", "reference");
        for (String kv : env) pb.environment().put(kv.substring(0, kv.indexOf('=')), kv.substring(kv.indexOf('=') + 1));
        processes.add(pb.start());
    }

    static String logs() {
        StringBuilder sb = new StringBuilder();
        try (var files = Files.list(dir)) {
            for (Path p : files.filter(f -> f.toString().endsWith(".log")).toList()) {
                List<String> lines = Files.readAllLines(p);
                sb.append("\n--- ").append(p.getFileName()).append('\n').append(String.join("\n", lines.subList(Math.max(0, lines.size() - 15), lines.size())));
            }
        } catch (Exception e) {
            sb.append(e);
        }
        return sb.toString();
    }

    @AfterAll
    static void stop() throws Exception {
        for (Process p : processes.reversed()) p.destroy(); // SIGTERM: each service closes itself
        for (Process p : processes) if (!p.waitFor(15, TimeUnit.SECONDS)) p.destroyForcibly();
        if (kafka != null) kafka.close();
    }

    /** A stub sending {@code authorization: <value>} (none when null). */
    static InferenceGrpc.InferenceBlockingStub stub(ManagedChannel ch, String authorization) {
        InferenceGrpc.InferenceBlockingStub s = InferenceGrpc.newBlockingStub(ch).withDeadlineAfter(120, TimeUnit.SECONDS);
        if (authorization == null) return s;
        Metadata m = new Metadata();
        m.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), authorization);
        return s.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(m));
    }

    @Test
    void grpcWantsTheApiKeyExceptForHealth() throws Exception {
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + routerGrpc);
        try {
            TokenizeRequest tokenize = TokenizeRequest.newBuilder().setText("key?").build();
            for (String auth : new String[]{null, "Bearer wrong", API_KEY, "Bearer " + API_KEY + "x", "Basic " + API_KEY}) {
                var e = assertThrows(StatusRuntimeException.class, () -> stub(ch, auth).tokenize(tokenize), "authorization " + auth);
                assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode(), "authorization " + auth);
            }
            assertThrows(StatusRuntimeException.class, () -> stub(ch, null).generate(GenerateRequest.newBuilder().setPrompt("x").build()));
            assertTrue(stub(ch, "Bearer " + API_KEY).tokenize(tokenize).getIdsCount() > 0);
            assertEquals(ServingStatus.SERVING_STATUS_SERVING, stub(ch, null).health(HealthRequest.getDefaultInstance()).getStatus(),
                    "health is open");
        } finally {
            Grpc.shutdown(ch);
        }
        // the client SDK sends the key it is built with
        try (LightMeshClient with = LightMeshClient.builder().target("127.0.0.1:" + routerGrpc).plaintext().apiKey(API_KEY).build();
             LightMeshClient without = LightMeshClient.builder().target("127.0.0.1:" + routerGrpc).plaintext().build()) {
            Completion c = with.generate(io.lightmesh.client.GenerationRequest.prompt("Keyed").maxTokens(3).temperature(0).ignoreEos(true).build());
            assertEquals(3, c.usage().completionTokens());
            LightMeshException e = assertThrows(LightMeshException.class,
                    () -> without.generate(io.lightmesh.client.GenerationRequest.prompt("Keyless").maxTokens(3).build()));
            assertEquals(Status.Code.UNAUTHENTICATED, e.code());
        }
    }

    @Test
    void textOverGrpcEqualsTheEngineAndTheHttpPortServesTheOpenAiApi() throws Exception {
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + routerGrpc);
        try (MeshModel m = MeshModel.load(model, new ReferenceOps())) {
            String prompt = "Services on their own";
            GenerateResponse r = stub(ch, "Bearer " + API_KEY).generate(GenerateRequest.newBuilder()
                    .setPrompt(prompt).setReturnTokenIds(true)
                    .setSampling(SamplingParams.newBuilder().setTemperature(0.9f).setSeed(77).setMaxNewTokens(10)).build());
            Generator.Result e = Generator.generate(m.model(), m.tokenizer(), m.tokenizer().encode(prompt),
                    new io.lightmesh.engine.generate.SamplingParams(0.9f, 0, 1f, 77, 10, List.of(), 0), null);
            assertEquals(Arrays.stream(e.tokens()).boxed().toList(), r.getTokenIdsList());
            assertEquals(e.text(), r.getText());
        } finally {
            Grpc.shutdown(ch);
        }
        String body = "{\"model\": \"model\", \"prompt\": \"Hello\", \"max_tokens\": 4, \"temperature\": 0}";
        HttpResponse<String> denied = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + routerHttp + "/v1/completions"))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(401, denied.statusCode(), denied.body());
        // with the key: the HTTP front passes it on to the router's gRPC API
        HttpResponse<String> c = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + routerHttp + "/v1/completions"))
                .header("Content-Type", "application/json").header("Authorization", "Bearer " + API_KEY)
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, c.statusCode(), c.body());
        assertTrue(c.body().contains("\"completion_tokens\""), c.body());
    }
}
