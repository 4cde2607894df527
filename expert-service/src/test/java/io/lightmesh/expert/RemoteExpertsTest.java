package io.lightmesh.expert;

import io.grpc.Server;
import io.grpc.Status;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.LivePlacement;
import io.lightmesh.mesh.PlacementSource;
import io.lightmesh.mesh.RemoteExperts;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** RemoteExperts against real expert shards on loopback gRPC: replicas, failover, placement changes. */
class RemoteExpertsTest {
    @TempDir static Path dir;
    static TinyModel m;
    final List<Running> running = new ArrayList<>();

    record Running(ExpertShard shard, Server server) {
        ExpertPlacement.Shard entry() { return shard.placementShard(); }
        void kill() { server.shutdownNow(); }
    }

    @BeforeAll
    static void load() throws Exception { m = new TinyModel(dir.resolve("model")); }

    @AfterAll
    static void close() { if (m != null) m.model.close(); }

    @AfterEach
    void stopShards() { for (Running r : running) { Grpc.shutdown(r.server()); r.shard().close(); } }

    Running start(String id, Map<Integer, int[]> held) throws IOException {
        int port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) { port = s.getLocalPort(); }
        ExpertShard shard = new ExpertShard(ExpertPlacement.Shard.of(id, "127.0.0.1:" + port, held), m.model, OpenTelemetry.noop(), Integer.MAX_VALUE);
        Running r = new Running(shard, Grpc.serve("127.0.0.1", port, shard.services(), true));
        running.add(r);
        return r;
    }

    static Map<Integer, int[]> experts(int... es) {
        Map<Integer, int[]> a = new HashMap<>();
        for (int l = 0; l < m.L; l++) a.put(l, es.clone());
        return a;
    }

    static ExpertPlacement placement(long version, Running... shards) {
        return new ExpertPlacement(m.L, m.E, java.util.Arrays.stream(shards).map(Running::entry).toList(), version);
    }

    static RemoteExperts remote(PlacementSource source, long placementWaitMs) {
        return new RemoteExperts(source, m.h, new RemoteExperts.Settings(10_000, placementWaitMs, 5_000, "test"), false, new int[] {m.L, m.E});
    }

    static float[] run(RemoteExperts r, TinyModel.Call c) {
        float[] out = new float[c.n() * m.h];
        r.run(c.layer(), c.x(), c.n(), m.k, c.experts(), c.weights(), out);
        return out;
    }

    @Test
    void aReplicatedExpertsRowsAreSplitAcrossReplicasAndTheResultEqualsASingleOwner() throws Exception {
        Running a = start("A", experts(0, 1, 2, 3)), b = start("B", experts(0, 1, 2, 3));
        Running x = start("X", experts(0, 2)), y = start("Y", experts(1, 3));
        try (RemoteExperts replicated = remote(PlacementSource.fixed(placement(0, a, b)), 1_000);
             RemoteExperts single = remote(PlacementSource.fixed(placement(0, x, y)), 1_000)) {
            // concurrent calls, as a prefill and a decode loop make them
            ExecutorService pool = Executors.newFixedThreadPool(4);
            List<Future<?>> fs = new ArrayList<>();
            for (int i = 0; i < 24; i++) {
                int seed = i;
                fs.add(pool.submit(() -> {
                    TinyModel.Call c = m.call(100 + seed, seed % m.L, 8 + seed);
                    float[] want = m.inProcess(c);
                    assertArrayEquals(want, run(single, c), "single owner");
                    assertArrayEquals(want, run(replicated, c), "replicated: bit-identical whichever replica computed a row");
                }));
            }
            for (Future<?> f : fs) f.get();
            pool.shutdown();
            long ta = a.shard().info().getTokensComputed(), tb = b.shard().info().getTokensComputed();
            assertTrue(ta > 0 && tb > 0, "both replicas computed slots: " + ta + " and " + tb);
            double share = (double) ta / (ta + tb);
            assertTrue(share > 0.2 && share < 0.8, "balanced: replica A computed " + ta + " of " + (ta + tb));
            assertEquals(0, replicated.resentSlots());
        }
    }

    @Test
    void aFailedReplicasRowsGoToTheOthersAndItIsReported() throws Exception {
        Running a = start("A", experts(0, 1, 2, 3)), b = start("B", experts(0, 1, 2, 3));
        List<LivePlacement.Report> reports = new CopyOnWriteArrayList<>();
        LivePlacement live = new LivePlacement(placement(1, a, b), reports::add);
        try (RemoteExperts r = remote(live, 2_000)) {
            TinyModel.Call warm = m.call(1, 0, 16);
            assertArrayEquals(m.inProcess(warm), run(r, warm));
            a.kill();
            for (int i = 0; i < 8; i++) {
                TinyModel.Call c = m.call(200 + i, i % m.L, 16);
                long t0 = System.nanoTime();
                assertArrayEquals(m.inProcess(c), run(r, c), "rows of the killed shard recomputed by its replica");
                assertTrue((System.nanoTime() - t0) / 1e6 < 2_000, "no wait: a replica was left");
            }
            assertTrue(r.resentSlots() > 0, "the killed shard's slots were sent again");
            assertEquals(java.util.Set.of("A"), r.avoidedShards());
            assertFalse(reports.isEmpty(), "reported to the source");
            assertEquals("A", reports.get(0).shard().id());
            assertEquals(1, reports.get(0).placementVersion());
        }
    }

    @Test
    void withNoReplicaLeftAFixedPlacementFailsAtOnceWithUnavailable() throws Exception {
        Running x = start("X", experts(0, 2)), y = start("Y", experts(1, 3));
        try (RemoteExperts r = remote(PlacementSource.fixed(placement(0, x, y)), 10_000)) {
            TinyModel.Call c = m.call(3, 1, 16);
            assertArrayEquals(m.inProcess(c), run(r, c));
            y.kill();
            long t0 = System.nanoTime();
            RemoteExperts.ExpertsUnavailableException e = assertThrows(RemoteExperts.ExpertsUnavailableException.class, () -> run(r, c));
            assertTrue((System.nanoTime() - t0) / 1e6 < 3_000, "no wait for a placement that cannot come");
            assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
            assertTrue(e.getMessage().contains("no placement controller"), e.getMessage());
            assertTrue(e.getMessage().contains("Y@"), "names the failed shard: " + e.getMessage());
            t0 = System.nanoTime();
            assertThrows(RemoteExperts.ExpertsUnavailableException.class, () -> run(r, c));
            assertTrue((System.nanoTime() - t0) / 1e6 < 3_000, "a dead last replica is probed, not sent rows");
        }
    }

    @Test
    void aDeadShardThatComesBackAnswersItsProbeAndServesAgain() throws Exception {
        Running x = start("X", experts(0, 2)), y = start("Y", experts(1, 3));
        try (RemoteExperts r = remote(PlacementSource.fixed(placement(0, x, y)), 10_000)) {
            TinyModel.Call c = m.call(6, 4, 16);
            assertArrayEquals(m.inProcess(c), run(r, c));
            y.kill();
            y.server().awaitTermination(5, java.util.concurrent.TimeUnit.SECONDS);
            assertThrows(RemoteExperts.ExpertsUnavailableException.class, () -> run(r, c));
            assertEquals(java.util.Set.of("Y"), r.avoidedShards());
            // restarted at the same address (a pod restarted behind its service name)
            ExpertShard again = new ExpertShard(y.entry(), m.model, OpenTelemetry.noop(), Integer.MAX_VALUE);
            running.add(new Running(again, Grpc.serve("127.0.0.1", Integer.parseInt(y.entry().address().split(":")[1]), again.services(), true)));
            assertArrayEquals(m.inProcess(c), run(r, c));
            assertTrue(r.avoidedShards().isEmpty());
            assertTrue(again.info().getTokensComputed() > 0);
        }
    }

    @Test
    void withNoReplicaLeftTheCallWaitsForANewerPlacementThatCoversIt() throws Exception {
        Running x = start("X", experts(0, 2)), y = start("Y", experts(1, 3));
        LivePlacement live = new LivePlacement(placement(1, x, y), rep -> {});
        try (RemoteExperts r = remote(live, 8_000)) {
            TinyModel.Call c = m.call(4, 2, 16);
            assertArrayEquals(m.inProcess(c), run(r, c));
            y.kill();
            Running z = start("Z", experts(1, 3)); // the controller's replacement, published a moment later
            Thread publisher = new Thread(() -> {
                try { Thread.sleep(300); } catch (InterruptedException e) { return; }
                live.publish(placement(2, x, z));
            });
            publisher.start();
            long t0 = System.nanoTime();
            assertArrayEquals(m.inProcess(c), run(r, c), "computed on the new placement's shard");
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms >= 250 && ms < 8_000, "waited for the new version, not for the whole bound: " + ms + " ms");
            assertTrue(z.shard().info().getTokensComputed() > 0);
            publisher.join();
        }
    }

    @Test
    void withoutANewerPlacementTheWaitIsBoundedAndLaterCallsFailAtOnce() throws Exception {
        Running x = start("X", experts(0, 2)), y = start("Y", experts(1, 3));
        LivePlacement live = new LivePlacement(placement(1, x, y), rep -> {});
        try (RemoteExperts r = remote(live, 600)) {
            TinyModel.Call c = m.call(5, 3, 8);
            y.kill();
            long t0 = System.nanoTime();
            RemoteExperts.ExpertsUnavailableException e = assertThrows(RemoteExperts.ExpertsUnavailableException.class, () -> run(r, c));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms >= 550 && ms < 5_000, "waited the bound: " + ms + " ms");
            assertTrue(e.getMessage().contains("no newer placement within 600 ms"), e.getMessage());
            t0 = System.nanoTime();
            assertThrows(RemoteExperts.ExpertsUnavailableException.class, () -> run(r, c));
            assertTrue((System.nanoTime() - t0) / 1e6 < 500, "the same version does not wait again");
            // a newer version covering the pair brings the calls back
            Running z = start("Z", experts(1, 3));
            live.publish(placement(2, x, z));
            assertArrayEquals(m.inProcess(c), run(r, c));
        }
    }

    @Test
    void aPairUnloadedBeforeTheWorkerSawTheNewPlacementIsRoutedToItsOtherReplica() throws Exception {
        Running a = start("A", experts(0, 1, 2, 3)), b = start("B", experts(0, 1, 2, 3));
        List<LivePlacement.Report> reports = new CopyOnWriteArrayList<>();
        LivePlacement live = new LivePlacement(placement(1, a, b), reports::add);
        try (RemoteExperts r = remote(live, 2_000)) {
            // A drops every expert of layer 5 while the worker still routes by version 1
            a.shard().unload(Map.of(5, new int[] {0, 1, 2, 3}), 2, 1_000);
            for (int i = 0; i < 4; i++) {
                TinyModel.Call c = m.call(300 + i, 5, 16);
                assertArrayEquals(m.inProcess(c), run(r, c));
            }
            assertTrue(r.resentSlots() > 0, "A refused its slots in band");
            assertTrue(reports.isEmpty(), "a refusal is not a failure: " + reports);
            assertTrue(r.avoidedShards().isEmpty());
            long before = a.shard().info().getTokensComputed();
            TinyModel.Call other = m.call(9, 4, 32);
            assertArrayEquals(m.inProcess(other), run(r, other));
            assertTrue(a.shard().info().getTokensComputed() > before, "A still serves the layers it holds");
        }
    }

    @Test
    void linksOfShardsGoneFromThePlacementAreClosedAndNewShardsUsed() throws Exception {
        Running a = start("A", experts(0, 1, 2, 3)), b = start("B", experts(0, 1, 2, 3));
        LivePlacement live = new LivePlacement(placement(1, a), rep -> {});
        try (RemoteExperts r = remote(live, 2_000)) {
            TinyModel.Call c = m.call(11, 1, 16);
            assertArrayEquals(m.inProcess(c), run(r, c));
            assertEquals(0, b.shard().info().getTokensComputed());
            live.publish(placement(2, b));
            assertArrayEquals(m.inProcess(c), run(r, c));
            long onA = a.shard().info().getTokensComputed();
            assertTrue(b.shard().info().getTokensComputed() > 0, "the new shard is used at the next call");
            a.kill(); // gone from the placement: its loss is nobody's failure
            assertArrayEquals(m.inProcess(c), run(r, c));
            assertEquals(onA, a.shard().info().getTokensComputed());
            assertEquals(0, r.failedBatches());
        }
    }
}
