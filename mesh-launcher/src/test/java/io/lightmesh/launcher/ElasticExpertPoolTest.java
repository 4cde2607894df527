package io.lightmesh.launcher;

import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.router.placement.PlacementController;
import io.lightmesh.router.placement.PlacementView;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The elastic expert pool in the mesh, with real Kafka, real gRPC and real expert shards: a checkpoint whose router
 * prefers experts {0, 1} in layer 0 and {0, 4} in layer 1 (with 4 shards round-robin, shard expert-0 carries three of
 * the four hot pairs) makes the controller replicate the hot experts and bring the imbalance under the threshold,
 * while every greedy answer, before, during and after the re-placement, equals the in-process engine's; then a
 * shard killed under load loses no request (the controller re-loads its experts on the survivors).
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ElasticExpertPoolTest {
    static final int[][] HOT = {{0, 1}, {0, 4}};

    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    @RegisterExtension static final TestMesh running = new TestMesh();
    static EmbeddedMesh mesh;
    static InferenceGrpc.InferenceBlockingStub client;
    /** The answers every request is checked against; ExpertAutoscaleTest sets its own. */
    static GreedyCases cases;

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        SkewedCheckpoint.write(model, HOT, 0.5);
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, 0, kafka.bootstrapServers(), dir, 4, 1, 1,
                1L << 30, 32, "lightmesh.requests.v1", 64, 32);
        // a 2 s window polled every 200 ms, 500 ms grace: the production defaults (1 s / 60 s / 10 s) scaled down
        EmbeddedMesh.ExpertPool pool = new EmbeddedMesh.ExpertPool(-1, 0, 0, 200, 2000, 1.25, 500, 0.7);
        mesh = running.ready(EmbeddedMesh.start(o, pool, s -> OpenTelemetry.noop()));
        client = InferenceGrpc.newBlockingStub(running.channel());
        cases = GreedyCases.seeded(mesh.model().model(), 100, 12, 8, 5, 12);
    }

    /** Keeps {@code clients} greedy requests going until stopped; each answer is checked against the engine's. */
    static final class Load implements AutoCloseable {
        final AtomicBoolean running = new AtomicBoolean(true);
        final AtomicInteger done = new AtomicInteger();
        final ExecutorService pool;
        final List<Future<?>> futures = new ArrayList<>();

        Load(int clients) {
            pool = Executors.newFixedThreadPool(clients);
            for (int c = 0; c < clients; c++) {
                int first = c;
                futures.add(pool.submit(() -> {
                    for (int i = first; running.get(); i += 3) {
                        int k = i % cases.size();
                        GenerateResponse r = client.withDeadlineAfter(60, TimeUnit.SECONDS).generate(cases.request(k));
                        assertEquals(cases.expected().get(k), r.getTokenIdsList(), "prompt " + k);
                        done.incrementAndGet();
                    }
                    return null;
                }));
            }
        }

        /** Stops and rethrows the first failed request or wrong answer. */
        @Override
        public void close() throws Exception {
            running.set(false);
            for (Future<?> f : futures) f.get(90, TimeUnit.SECONDS);
            pool.shutdown();
        }
    }

    static void await(String what, long ms, BooleanSupplier cond) throws InterruptedException {
        long until = System.currentTimeMillis() + ms;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > until) throw new AssertionError("not within " + ms + " ms: " + what + "; view " + mesh.placementController().view().toJson());
            Thread.sleep(50);
        }
    }

    static int replicas(PlacementView v, int layer, int expert) {
        return v.experts().stream().filter(e -> e.layer() == layer && e.expert() == expert).findFirst().orElseThrow().replicas().size();
    }

    @Test @Order(1)
    void skewedLoadIsReplicatedUnderTheThresholdWithIdenticalAnswers() throws Exception {
        PlacementController c = mesh.placementController();
        await("first placement", 10_000, () -> c.view().version() > 0);
        try (Load load = new Load(6)) {
            await("re-placement", 40_000, () -> c.rebalances() > 0);
            int before = load.done.get();
            // answers keep coming (and keep matching) after the switch
            await("requests after the re-placement", 20_000, () -> load.done.get() >= before + 12);
            PlacementView v = c.view();
            assertTrue(v.imbalanceStatic() >= 2, "the skew is strong: static imbalance " + v.imbalanceStatic());
            assertTrue(v.imbalance() < 1.25, "balanced: " + v.imbalance());
            for (int l = 0; l < HOT.length; l++) for (int e : HOT[l]) assertTrue(replicas(v, l, e) >= 2, "hot " + l + "/" + e + " replicated: " + v.toJson());
        }
        // every shard computed for the new placement's hot copies: the rows of a replicated expert really are split
        HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + mesh.httpPort() + "/admin/placement")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode());
        assertTrue(r.body().contains("\"version\":" + c.view().version()) && r.body().contains("\"imbalance_static\":"), r.body());
    }

    @Test @Order(2)
    void aShardKilledUnderLoadLosesNothing() throws Exception {
        PlacementController c = mesh.placementController();
        long failovers = c.failovers();
        try (Load load = new Load(6)) {
            await("requests running", 20_000, () -> load.done.get() >= 6);
            mesh.killExpert("expert-0");
            int at = load.done.get();
            await("failover", 10_000, () -> c.failovers() > failovers);
            await("requests after the kill", 30_000, () -> load.done.get() >= at + 12);
        }
        PlacementView v = c.view();
        assertTrue(v.shards().stream().noneMatch(s -> s.id().equals("expert-0")), v.toJson());
        for (PlacementView.ExpertView e : v.experts()) assertTrue(!e.replicas().isEmpty(), "every expert still placed: " + v.toJson());
    }

    /**
     * A second controller over the mesh's real shards (a second router with lightmesh.placement-controller=true),
     * changing nothing: the mesh's controller, the earlier, hears its heartbeat on the shards at its next poll and
     * stands by (conflict set: the router's readiness DOWN); once the second stops, it is UP again within 3 of the
     * second's polls + 2 s and answers stay the engine's.
     */
    @Test @Order(3)
    void aSecondControllerOverTheRealShardsIsFoundAtOnceAndTheFirstResumesWhenItStops() throws Exception {
        PlacementController c = mesh.placementController();
        await("no conflict before", 10_000, () -> c.conflict() == null);
        List<String> shards = mesh.experts().stream().filter(e -> c.view().shards().stream().anyMatch(s -> s.id().equals(e.id())))
                .map(EmbeddedMesh.Component::address).toList();
        PlacementController second = new PlacementController(PlacementController.Settings.defaults().withWindow(200, 2000),
                mesh.model().model().config().numLayers(), mesh.model().model().config().numExperts(), mesh.model().fingerprint(),
                () -> shards, null, null).start();
        try {
            long t0 = System.currentTimeMillis();
            await("the mesh's controller hears the second", 5_000, () -> c.conflict() != null);
            System.out.println("ElasticExpertPoolTest: a second controller found in " + (System.currentTimeMillis() - t0) + " ms: " + c.conflict());
            assertTrue(c.conflict().contains(second.id()), c.conflict());
            assertEquals(null, second.conflict(), "the later one manages the shards");
        } finally {
            second.close();
        }
        long stopped = System.currentTimeMillis();
        await("UP again once the second stopped", 10_000, () -> c.conflict() == null);
        System.out.println("ElasticExpertPoolTest: UP again " + (System.currentTimeMillis() - stopped) + " ms after the second stopped");
        int k = 3;
        assertEquals(cases.expected().get(k), client.withDeadlineAfter(60, TimeUnit.SECONDS).generate(cases.request(k)).getTokenIdsList());
    }
}
