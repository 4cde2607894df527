package io.lightmesh.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.grpc.ManagedChannel;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.InferenceGrpc;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The elastic expert pool as the Quarkus applications run it, each service a process of its own: the router app
 * with its placement controller (lightmesh.experts, lightmesh.rebalance-interval-s), two expert-service apps with
 * spare slots, and a decode and a prefill worker that route by the controller's placement (lightmesh.placement),
 * over a real Kafka broker and real gRPC. The checkpoint's router prefers experts {0, 2} in layer 0 and {0, 4} in
 * layer 1, all held by shard expert-0 under the starting round-robin placement (static imbalance 1.7-2): the controller
 * must replicate layer 0's onto expert-1 (a new placement version, imbalance under the threshold in
 * {@code GET /admin/placement}), expert-1 must then compute rows of the hot experts, and every greedy answer before,
 * during and after the re-placement must equal the in-process engine's.
 */
class QuarkusElasticPoolTest {
    static final int[][] HOT = {{0, 2}, {0, 4}};

    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    static ServiceProcesses services;
    static int routerGrpc, routerHttp;
    static int[] expertPorts;
    static GreedyCases cases;

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        SkewedCheckpoint.write(model, HOT, 0.5);
        try (MeshModel m = MeshModel.load(model, new ReferenceOps())) {
            cases = GreedyCases.seeded(m.model(), 300, 8, 6, 4, 10);
        }
        services = new ServiceProcesses(dir);
        int e0 = KraftBroker.freePort(), e1 = KraftBroker.freePort(), d = KraftBroker.freePort();
        routerGrpc = KraftBroker.freePort();
        routerHttp = KraftBroker.freePort();
        expertPorts = new int[] {e0, e1};
        String experts = "127.0.0.1:" + e0 + ",127.0.0.1:" + e1;
        for (int i = 0; i < 2; i++) {
            services.quarkusApp("expert-" + i, "expert-service", Map.of("LIGHTMESH_MODEL", model.toString(), "LIGHTMESH_SHARD", i + "/2",
                    "LIGHTMESH_HOST", "127.0.0.1", "LIGHTMESH_GRPC_PORT", "" + expertPorts[i], "LIGHTMESH_HTTP_PORT", "" + KraftBroker.freePort(),
                    "LIGHTMESH_EXPERT_SLOTS", "4"));
        }
        // the controller: a 2 s window (production: 60 s), threshold 1.25, two spare slots per layer (the default)
        services.quarkusApp("router", "router", Map.of("LIGHTMESH_MODEL", model.toString(), "LIGHTMESH_KAFKA", kafka.bootstrapServers(),
                "LIGHTMESH_DECODE", "127.0.0.1:" + d, "LIGHTMESH_EXPERTS", experts, "LIGHTMESH_HOST", "127.0.0.1",
                "LIGHTMESH_GRPC_PORT", "" + routerGrpc, "LIGHTMESH_HTTP_PORT", "" + routerHttp, "LIGHTMESH_POLL_MS", "300",
                "LIGHTMESH_REBALANCE_INTERVAL_S", "2", "LIGHTMESH_IMBALANCE_THRESHOLD", "1.25"));
        String placement = "127.0.0.1:" + routerGrpc;
        services.quarkusApp("decode", "decode-service", Map.of("LIGHTMESH_MODEL", model.toString(), "LIGHTMESH_PLACEMENT", placement,
                "LIGHTMESH_HOST", "127.0.0.1", "LIGHTMESH_GRPC_PORT", "" + d, "LIGHTMESH_HTTP_PORT", "" + KraftBroker.freePort(),
                "LIGHTMESH_ADVERTISE", "127.0.0.1:" + d, "LIGHTMESH_BUDGET_GIB", "1"));
        services.quarkusApp("prefill", "prefill-service", Map.of("LIGHTMESH_MODEL", model.toString(), "LIGHTMESH_KAFKA", kafka.bootstrapServers(),
                "LIGHTMESH_PLACEMENT", placement, "LIGHTMESH_HOST", "127.0.0.1", "LIGHTMESH_HTTP_PORT", "" + KraftBroker.freePort()));
        services.awaitReady(routerHttp, 120_000);
    }

    @AfterAll
    static void stop() throws Exception {
        if (services != null) services.close("quarkus-elastic-pool-logs");
    }

    static JsonNode placement() throws Exception {
        var r = ServiceProcesses.get(routerHttp, "/admin/placement");
        assertTrue(r != null && r.statusCode() == 200, () -> "GET /admin/placement: " + (r == null ? "no answer" : r.statusCode() + " " + r.body()));
        return new ObjectMapper().readTree(r.body());
    }

    static int replicas(JsonNode view, int layer, int expert) {
        for (JsonNode e : view.get("experts")) {
            if (e.get("layer").asInt() == layer && e.get("expert").asInt() == expert) return e.get("replicas").size();
        }
        throw new AssertionError("no (" + layer + ", " + expert + ") in " + view);
    }

    static long tokensComputed(int shard) {
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + expertPorts[shard]);
        try {
            return io.lightmesh.proto.v1.WorkerGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .describe(io.lightmesh.proto.v1.DescribeRequest.getDefaultInstance()).getExpertShard().getTokensComputed();
        } finally {
            Grpc.shutdown(ch);
        }
    }

    @Test
    void theControllerReplicatesTheHotExpertsAndAnswersStayTheEngines() throws Exception {
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + routerGrpc);
        InferenceGrpc.InferenceBlockingStub client = InferenceGrpc.newBlockingStub(ch);
        AtomicBoolean running = new AtomicBoolean(true);
        AtomicInteger done = new AtomicInteger();
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            JsonNode first = placement();
            long v0 = first.get("version").asLong();
            for (int[] hot : new int[][] {{0, 0}, {0, 2}, {1, 0}, {1, 4}}) assertEquals(1, replicas(first, hot[0], hot[1]), "round-robin at first: " + first);
            // greedy requests from 4 clients until stopped, each answer checked against the engine's
            List<Future<?>> clients = new ArrayList<>();
            for (int c = 0; c < 4; c++) {
                int start = c;
                clients.add(pool.submit(() -> {
                    for (int i = start; running.get(); i += 4) {
                        int k = i % cases.size();
                        List<Integer> got = client.withDeadlineAfter(60, TimeUnit.SECONDS).generate(cases.request(k)).getTokenIdsList();
                        assertEquals(cases.expected().get(k), got, "prompt " + k);
                        done.incrementAndGet();
                    }
                    return null;
                }));
            }
            long until = System.currentTimeMillis() + 45_000;
            JsonNode v = first;
            // re-placed (in steps, maybe: full shards give up copies before they load new ones) until balanced
            while (!(v.get("version").asLong() > v0 && v.get("imbalance").asDouble() < 1.25 && replicas(v, 0, 0) >= 2 && replicas(v, 0, 2) >= 2)
                    && System.currentTimeMillis() < until) {
                for (Future<?> f : clients) if (f.isDone()) f.get(); // a failed request or wrong answer ends the test at once
                Thread.sleep(250);
                v = placement();
            }
            JsonNode replaced = v;
            assertTrue(replaced.get("version").asLong() > v0, () -> "no re-placement within 45 s: " + replaced + services.logs());
            // layer 0 all on expert-0, layer 1 mostly (its hot experts win less often): 1.7-2 under round-robin
            assertTrue(replaced.get("imbalance_static").asDouble() >= 1.5, "the skew is strong: " + replaced);
            assertTrue(replaced.get("imbalance").asDouble() < 1.25, "balanced: " + replaced);
            // layer 0's hot experts are replicated; layer 1's skew is weaker, and which of its experts the planner copies
            // depends on the measured window (a CI run copied 1/0 and 1/5 and left 1/4 single, balanced at 1.17), so
            // layer 1 is held to the imbalance bound above rather than to particular copies
            for (int e : HOT[0]) assertTrue(replicas(replaced, 0, e) >= 2, "hot 0/" + e + " replicated: " + replaced);
            // the workers switch to the new placement: expert-1 computes rows, answers keep coming and keep matching
            long onE1 = tokensComputed(1);
            int before = done.get();
            until = System.currentTimeMillis() + 30_000;
            while ((done.get() < before + 8 || tokensComputed(1) <= onE1) && System.currentTimeMillis() < until) {
                for (Future<?> f : clients) if (f.isDone()) f.get();
                Thread.sleep(100);
            }
            assertTrue(done.get() >= before + 8, "requests after the re-placement: " + (done.get() - before));
            assertTrue(tokensComputed(1) > onE1, "expert-1 computes rows after the re-placement");
            running.set(false);
            for (Future<?> f : clients) f.get(90, TimeUnit.SECONDS);
        } finally {
            running.set(false);
            pool.shutdownNow();
            Grpc.shutdown(ch);
        }
    }
}
