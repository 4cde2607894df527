package io.lightmesh.router.placement;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.stub.StreamObserver;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.proto.v1.PlacementGrpc;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.UnreachableReport;
import io.lightmesh.proto.v1.WatchPlacementRequest;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The controller against stand-in shards over real gRPC ({@link FakeShards}; the mesh tests use real ones): the first
 * version from the shards' holdings, re-placement under a skewed load (new copies loaded before the version is
 * published, dropped copies unloaded after the grace), failover on a dead shard (by poll and by a worker's report),
 * a slow shard told from a dead one (kept, never dropped as a pair's last answering holder), and scaling a pool up
 * under load and down when idle.
 */
class PlacementControllerTest {
    static final int L = 2, E = 8;

    final FakeShards fakes = new FakeShards(L, E);
    final List<AutoCloseable> closing = new ArrayList<>();
    final AtomicBoolean driving = new AtomicBoolean(true);
    volatile double[][] rate;

    @AfterEach
    void close() throws Exception {
        driving.set(false);
        for (AutoCloseable c : closing.reversed()) c.close();
        fakes.close();
    }

    PlacementController controller(PlacementController.Settings s, ShardPool pool) {
        PlacementController c = new PlacementController(s, L, E, FakeShards.FINGERPRINT, fakes::addresses, pool,
                OpenTelemetry.noop().getMeter("test"));
        closing.add(c);
        return c.start();
    }

    /** Plays {@link #rate} on the fake shards every 50 ms. */
    void drive() {
        Thread t = Thread.ofPlatform().daemon().start(() -> {
            while (driving.get()) {
                fakes.drive(rate, 0.05, 500);
                try { Thread.sleep(50); } catch (InterruptedException e) { return; }
            }
        });
        closing.add(() -> { driving.set(false); t.join(2000); });
    }

    static double[][] skew(double hot, double cold, int... hotExperts) {
        double[][] r = new double[L][E];
        for (double[] l : r) {
            java.util.Arrays.fill(l, cold);
            for (int e : hotExperts) l[e] = hot;
        }
        return r;
    }

    static void await(String what, long ms, BooleanSupplier cond) throws InterruptedException {
        long until = System.currentTimeMillis() + ms;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > until) throw new AssertionError("not within " + ms + " ms: " + what);
            Thread.sleep(20);
        }
    }

    /** A Placement.Watch client collecting the maps it receives. */
    List<PlacementMap> watch(PlacementController c) throws Exception {
        Server server = Grpc.serve("127.0.0.1", 0, List.of(c.service()));
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + server.getPort());
        closing.add(server::shutdownNow);
        closing.add(ch::shutdownNow);
        watchChannel = ch;
        List<PlacementMap> got = new CopyOnWriteArrayList<>();
        PlacementGrpc.newStub(ch).watch(WatchPlacementRequest.newBuilder().setWatcherId("test").build(), new StreamObserver<>() {
            @Override public void onNext(PlacementMap m) { got.add(m); }
            @Override public void onError(Throwable t) {}
            @Override public void onCompleted() {}
        });
        return got;
    }

    static int copies(PlacementMap m, int layer, int expert) {
        int n = 0;
        for (var s : m.getShardsList()) for (var le : s.getLayerExpertsList()) if (le.getLayer() == layer && le.getExpertsList().contains(expert)) n++;
        return n;
    }

    @Test
    void skewedLoadIsReplicatedLiveAndOldCopiesUnloadedAfterTheGrace() throws Exception {
        for (int i = 0; i < 4; i++) fakes.add("expert-" + i, 64, i, i + 4);
        rate = skew(1000, 20, 0, 1); // static: shards 0 and 1 carry 1020/layer, shards 2 and 3 40: imbalance 1.92
        drive();
        PlacementController c = controller(PlacementController.Settings.defaults().withWindow(100, 1000).withDrainGraceMs(300), null);
        List<PlacementMap> seen = watch(c);
        await("first version", 5000, () -> !seen.isEmpty());
        PlacementMap first = seen.getFirst();
        assertEquals(1, first.getVersion());
        assertEquals(1, copies(first, 0, 0));

        await("re-placement", 10_000, () -> c.rebalances() > 0);
        await("the new version reaches the watcher", 5000, () -> seen.getLast().getVersion() == c.view().version());
        PlacementMap balanced = seen.getLast();
        assertTrue(balanced.getVersion() > first.getVersion());
        // 4 slots per layer per shard (share 2 + 2 spare): the two hot experts get a copy on every shard
        for (int l = 0; l < L; l++) {
            assertEquals(4, copies(balanced, l, 0), "copies of hot expert 0 in layer " + l);
            assertEquals(4, copies(balanced, l, 1));
            for (int e = 2; e < E; e++) assertTrue(copies(balanced, l, e) >= 1);
        }
        // every copy the new version lists was loaded on its shard before it was published
        for (var sp : balanced.getShardsList()) {
            FakeShards.Shard s = fakes.shards.stream().filter(f -> f.id.equals(sp.getShardId())).findFirst().orElseThrow();
            for (var le : sp.getLayerExpertsList()) for (int e : le.getExpertsList()) assertTrue(s.holds(le.getLayer(), e));
        }
        await("imbalance under the threshold", 5000, () -> c.view().imbalance() < 1.25 && c.view().version() == balanced.getVersion());
        assertTrue(c.view().imbalanceStatic() > 1.8, "static " + c.view().imbalanceStatic());
        // the dropped copies (shards 2 and 3 gave up a cold expert each to make room) are unloaded after the grace
        await("old copies unloaded", 5000, () -> fakes.shards.stream().allMatch(s -> s.used() <= 8)
                && fakes.shards.stream().anyMatch(s -> s.calls.stream().anyMatch(x -> x.startsWith("unload"))));
        String json = c.view().toJson();
        assertTrue(json.startsWith("{\"version\":" + balanced.getVersion() + ",\"window_s\":1.0,\"imbalance\":"), json);
        // a steady balanced load does not make it churn
        long v = c.view().version();
        Thread.sleep(2500);
        assertEquals(v, c.view().version());
        assertEquals(null, c.conflict(), "its own versions are no sign of another controller");
    }

    static double load(PlacementView v, int layer, int expert) {
        return v.experts().stream().filter(e -> e.layer() == layer && e.expert() == expert).findFirst().orElseThrow().load();
    }

    @Test
    void fullShardsReachTheNewPlacementInStepsWithoutLosingAPair() throws Exception {
        // two shards of 12 slots (share 4 + 2 spare per layer), holding the even and the odd experts; layer 0 prefers
        // {0, 2}, layer 1 {0, 4} with the rest warm: the plan moves cold experts between the shards too, so a shard
        // must load more new copies than it has free slots (load-before-unload alone was refused over and over)
        fakes.add("expert-0", 12, 0, 2, 4, 6);
        fakes.add("expert-1", 12, 1, 3, 5, 7);
        double[][] r = new double[L][E];
        java.util.Arrays.fill(r[0], 5);
        r[0][0] = r[0][2] = 1000;
        r[1] = new double[] {300, 130, 65, 100, 700, 160, 65, 65};
        rate = r;
        drive();
        PlacementController c = controller(PlacementController.Settings.defaults().withWindow(100, 1000).withDrainGraceMs(300), null);
        List<PlacementMap> seen = watch(c);
        try {
            await("re-placed, balanced", 20_000, () -> c.rebalances() > 0 && c.view().imbalance() < 1.25);
        } catch (AssertionError e) {
            throw new AssertionError(e.getMessage() + ": " + c.view().toJson() + " holdings " + fakes.shards.stream().map(x -> x.id + "=" + x.held + "/" + x.calls).toList());
        }
        await("the watcher has the newest version", 5000, () -> seen.getLast().getVersion() == c.view().version());
        for (PlacementMap m : seen) {
            for (int l = 0; l < L; l++) for (int e = 0; e < E; e++) assertTrue(copies(m, l, e) >= 1, "version " + m.getVersion() + " lost " + l + "/" + e);
        }
        for (var sp : seen.getLast().getShardsList()) {
            FakeShards.Shard s = fakes.shards.stream().filter(f -> f.id.equals(sp.getShardId())).findFirst().orElseThrow();
            for (var le : sp.getLayerExpertsList()) for (int e : le.getExpertsList()) assertTrue(s.holds(le.getLayer(), e), "loaded before published");
        }
        for (int l = 0; l < L; l++) assertEquals(2, copies(seen.getLast(), l, 0), "hot expert 0 of layer " + l + " on both shards");
    }

    @Test
    void aDeadShardIsDroppedAndItsExpertsLoadedOnTheSurvivors() throws Exception {
        for (int i = 0; i < 3; i++) fakes.add("expert-" + i, 64, i, i + 3, i + 6 < E ? i + 6 : i);
        rate = skew(10, 10);
        drive();
        PlacementController c = controller(PlacementController.Settings.defaults().withWindow(100, 5000), null);
        List<PlacementMap> seen = watch(c);
        await("first version", 5000, () -> !seen.isEmpty());
        fakes.shards.get(1).kill();
        await("failover", 5000, () -> c.failovers() > 0 && seen.getLast().getShardsCount() == 2);
        PlacementMap after = seen.getLast();
        for (int l = 0; l < L; l++) for (int e = 0; e < E; e++) assertEquals(1, copies(after, l, e), l + "/" + e);
        List<String> loaded = new ArrayList<>();
        for (FakeShards.Shard s : List.of(fakes.shards.get(0), fakes.shards.get(2))) loaded.addAll(s.calls);
        assertTrue(loaded.containsAll(List.of("load 0/1", "load 0/4", "load 0/7", "load 1/1", "load 1/4", "load 1/7")), loaded.toString());
        assertEquals(2, c.view().shards().size());
    }

    @Test
    void aWorkersReportDropsAShardThatFailsTheProbeAndKeepsOneThatAnswers() throws Exception {
        for (int i = 0; i < 2; i++) fakes.add("expert-" + i, 64, i, i + 2, i + 4, i + 6);
        // polls every 20 s: only the reports can make it act within the test
        PlacementController c = controller(PlacementController.Settings.defaults().withWindow(20_000, 60_000), null);
        List<PlacementMap> seen = watch(c);
        await("first version", 5000, () -> !seen.isEmpty());
        PlacementGrpc.PlacementBlockingStub stub = PlacementGrpc.newBlockingStub(watchChannel);
        stub.reportUnreachable(UnreachableReport.newBuilder().setShardId("expert-0").setReason("test").setReporterId("decode-0").build());
        Thread.sleep(500);
        assertEquals(0, c.failovers(), "a shard that answers the probe is kept");
        fakes.shards.get(0).kill();
        long t0 = System.currentTimeMillis();
        stub.reportUnreachable(UnreachableReport.newBuilder().setShardId("expert-0").setReason("UNAVAILABLE").setReporterId("decode-0").build());
        await("dropped on report", 5000, () -> c.failovers() == 1 && seen.getLast().getShardsCount() == 1);
        assertTrue(System.currentTimeMillis() - t0 < 15_000, "before the next poll");
        for (int l = 0; l < L; l++) for (int e = 0; e < E; e++) assertEquals(1, copies(seen.getLast(), l, e));
    }

    ManagedChannel watchChannel;

    @Test
    void theLastShardGoneLeavesAnEmptyMap() throws Exception {
        fakes.add("expert-0", 64, 0, 1, 2, 3, 4, 5, 6, 7);
        PlacementController c = controller(PlacementController.Settings.defaults().withWindow(100, 1000), null);
        List<PlacementMap> seen = watch(c);
        await("first version", 5000, () -> !seen.isEmpty());
        fakes.shards.getFirst().kill();
        await("empty map published", 5000, () -> seen.getLast().getShardsCount() == 0);
        assertTrue(seen.getLast().getVersion() > seen.getFirst().getVersion());
    }

    @Test
    void survivorsThatAreFullArePassedOverAndTheOrphansGoWhereThereIsRoom() throws Exception {
        // expert-1 has no room at all; expert-2 takes all of expert-0's experts
        fakes.add("expert-0", 8, 0, 3, 6, 7);
        fakes.add("expert-1", 6, 1, 4, 5);
        fakes.add("expert-2", 64, 2);
        PlacementController c = controller(PlacementController.Settings.defaults().withWindow(100, 5000), null);
        List<PlacementMap> seen = watch(c);
        await("first version", 5000, () -> !seen.isEmpty());
        fakes.shards.getFirst().kill();
        await("failover complete", 5000, () -> seen.getLast().getShardsCount() == 2 && c.failovers() == 1);
        for (int l = 0; l < L; l++) for (int e = 0; e < E; e++) assertEquals(1, copies(seen.getLast(), l, e), l + "/" + e);
        assertTrue(fakes.shards.get(2).calls.contains("load 0/7"));
    }

    /** Describe within 200 ms, growing to 1.6 s when slow, dropped after 2 misses: a starved machine in miniature. */
    static PlacementController.Settings quickLiveness() {
        return PlacementController.Settings.defaults().withWindow(100, 5000).withLiveness(new PlacementController.Liveness(200, 1600, 2));
    }

    @Test
    void aSlowShardIsKeptAndItsBoundGrowsUntilItAnswers() throws Exception {
        fakes.add("expert-0", 64, 0, 2, 4, 6);
        fakes.add("expert-1", 64, 1, 3, 5, 7);
        PlacementController c = controller(quickLiveness(), null);
        List<PlacementMap> seen = watch(c);
        await("first version", 5000, () -> !seen.isEmpty());
        // 700 ms a Describe: over the 200 ms bound, under the grown one (400, 800, 1600)
        fakes.shards.get(1).describeDelayMs = 700;
        Thread.sleep(5000);
        assertEquals(0, c.failovers(), "a slow shard is not a dead one");
        assertEquals(2, seen.getLast().getShardsCount());
        assertEquals(seen.getFirst().getVersion(), seen.getLast().getVersion(), "no version published for slowness");
    }

    @Test
    void theLastAnsweringHolderOfAPairIsNeverDroppedForSlowness() throws Exception {
        // each shard alone holds half the experts; both stop answering in time (a machine starved of CPU)
        fakes.add("expert-0", 64, 0, 2, 4, 6);
        fakes.add("expert-1", 64, 1, 3, 5, 7);
        PlacementController c = controller(quickLiveness(), null);
        List<PlacementMap> seen = watch(c);
        await("first version", 5000, () -> !seen.isEmpty());
        for (FakeShards.Shard s : fakes.shards) s.describeDelayMs = 60_000;
        Thread.sleep(8000); // about four polls at the grown 1.6 s bound: twice the misses that drop a shard
        assertEquals(0, c.failovers(), "the only holders of their pairs are kept however late they answer");
        PlacementMap last = seen.getLast();
        assertEquals(2, last.getShardsCount());
        for (int l = 0; l < L; l++) for (int e = 0; e < E; e++) assertEquals(1, copies(last, l, e), l + "/" + e);
        // they answer again: nothing was changed meanwhile
        for (FakeShards.Shard s : fakes.shards) s.describeDelayMs = 0;
        Thread.sleep(1000);
        assertEquals(0, c.failovers());
        assertEquals(seen.getFirst().getVersion(), c.view().version());
    }

    @Test
    void aHungReplicaIsDroppedWhenAnotherAnsweringShardHoldsItsPairs() throws Exception {
        // both hold every expert; expert-1's Describe hangs (its connection stays open): expert-0 answers for every pair
        fakes.add("expert-0", 64, 0, 1, 2, 3, 4, 5, 6, 7);
        fakes.add("expert-1", 64, 0, 1, 2, 3, 4, 5, 6, 7);
        PlacementController c = controller(quickLiveness(), null);
        List<PlacementMap> seen = watch(c);
        await("first version", 5000, () -> !seen.isEmpty());
        fakes.shards.get(1).describeDelayMs = 60_000;
        await("the hung replica dropped", 10_000, () -> c.failovers() == 1 && seen.getLast().getShardsCount() == 1);
        PlacementMap after = seen.getLast();
        assertEquals("expert-0", after.getShards(0).getShardId());
        for (int l = 0; l < L; l++) for (int e = 0; e < E; e++) assertEquals(1, copies(after, l, e), l + "/" + e);
        assertTrue(fakes.shards.get(0).calls.stream().noneMatch(x -> x.startsWith("load")), "nothing to re-place: " + fakes.shards.get(0).calls);
        // it answers again: it rejoins
        fakes.shards.get(1).describeDelayMs = 0;
        await("rejoined", 10_000, () -> seen.getLast().getShardsCount() == 2);
    }

    @Test
    void aRefusedShardIsDroppedAtOnceHoweverManyMissesASlowOneIsAllowed() throws Exception {
        fakes.add("expert-0", 64, 0, 2, 4, 6);
        fakes.add("expert-1", 64, 1, 3, 5, 7);
        // a slow shard would need 1000 misses: only the transport's refusal can drop this one
        PlacementController c = controller(PlacementController.Settings.defaults().withWindow(100, 5000)
                .withLiveness(new PlacementController.Liveness(200, 1600, 1000)), null);
        List<PlacementMap> seen = watch(c);
        await("first version", 5000, () -> !seen.isEmpty());
        fakes.shards.get(1).kill();
        await("dropped on the refused Describe", 5000, () -> c.failovers() == 1 && seen.getLast().getShardsCount() == 1);
        PlacementMap after = seen.getLast();
        for (int l = 0; l < L; l++) for (int e = 0; e < E; e++) assertEquals(1, copies(after, l, e), l + "/" + e);
        assertTrue(fakes.shards.get(0).calls.containsAll(List.of("load 0/1", "load 0/3", "load 1/5", "load 1/7")), fakes.shards.get(0).calls.toString());
    }

    @Test
    void aSecondControllerOverTheSameShardsIsDetected() throws Exception {
        // two routers each running a controller over the same shards (the chart refuses it; a hand-made deployment may not)
        for (int i = 0; i < 4; i++) fakes.add("expert-" + i, 64, i, i + 4);
        rate = skew(1000, 20, 0, 1);
        drive();
        PlacementController first = controller(PlacementController.Settings.defaults().withWindow(100, 1000).withDrainGraceMs(300), null);
        await("first's version", 5000, () -> first.view().version() > 0);
        assertEquals(null, first.conflict());
        // the second starts later (its window fills later): the first re-places, which the second sees on the shards
        PlacementController second = controller(PlacementController.Settings.defaults().withWindow(100, 1000).withDrainGraceMs(300), null);
        await("a controller sees the other's versions on the shards", 20_000, () -> first.conflict() != null || second.conflict() != null);
        String why = first.conflict() != null ? first.conflict() : second.conflict();
        assertTrue(why.contains("another placement controller manages these shards") && why.contains("lightmesh.placement-controller"), why);
    }

    /**
     * Two controllers over the same shards, neither changing the placement (no load): they find each other by the
     * heartbeats their Describes leave on the shards. The earlier one reports the later at its next poll and stands by
     * (its readiness DOWN, no change made), the later one is UP (a router's rolling update starts the new pod first
     * and waits for it to be ready); the later one stopped, the earlier is UP again within 3 of the later's polls +
     * 2 s and takes over from the shards' holdings with a new version.
     */
    @Test
    void twoControllersFindEachOtherWithoutAnyChangeAndTheEarlierStandsByUntilTheLaterStops() throws Exception {
        fakes.add("expert-0", 64, 0, 1, 2, 3);
        fakes.add("expert-1", 64, 4, 5, 6, 7);
        PlacementController.Settings s = PlacementController.Settings.defaults().withWindow(100, 1000);
        PlacementController first = controller(s, null);
        await("first's version", 5000, () -> first.view().version() > 0);
        long v1 = first.view().version();
        Thread.sleep(500);
        assertEquals(null, first.conflict(), "alone");
        PlacementController second = controller(s, null);
        long t0 = System.currentTimeMillis();
        await("the earlier controller hears the later", 3000, () -> first.conflict() != null);
        long detected = System.currentTimeMillis() - t0;
        String why = first.conflict();
        assertTrue(why.contains(second.id()) && why.contains("another placement controller manages these shards")
                && why.contains("lightmesh.placement-controller"), why);
        await("the later one's first placement", 5000, () -> second.view().version() > 0);
        Thread.sleep(500); // several polls of both
        assertEquals(null, second.conflict(), "the later one manages the shards");
        assertTrue(first.conflict() != null, "the earlier still stands by");
        assertEquals(v1, first.view().version(), "standing by, it published nothing");
        for (FakeShards.Shard sh : fakes.shards) assertTrue(sh.calls.isEmpty(), "no placement change: " + sh.calls);

        long stopped = System.currentTimeMillis();
        second.close();
        // 3 polls of 100 ms + 2 s after the later's last heartbeat, and a poll of the earlier
        await("the earlier is UP again once the later stopped", 5000, () -> first.conflict() == null);
        long up = System.currentTimeMillis() - stopped;
        await("it takes over with a new version", 2000, () -> first.view().version() > v1);
        assertTrue(up >= 2000, "not before the later's heartbeat is stale: " + up + " ms");
        System.out.println("PlacementControllerTest: detected in " + detected + " ms, UP again " + up + " ms after the later stopped");
    }

    @Test
    void livenessSettingsAreChecked() {
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> new PlacementController.Liveness(2000, 1000, 3));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> new PlacementController.Liveness(2000, 10_000, 0));
        assertEquals(new PlacementController.Liveness(2000, 10_000, 3), PlacementController.Settings.defaults().liveness());
    }

    @Test
    void aPoolIsScaledUpUnderLoadAndDrainedWhenIdle() throws Exception {
        fakes.add("expert-0", 64, 0, 2, 4, 6);
        fakes.add("expert-1", 64, 1, 3, 5, 7);
        List<String> stopped = new CopyOnWriteArrayList<>();
        ShardPool pool = new ShardPool() {
            int n = 2;
            @Override public String start() throws Exception { return fakes.add("expert-" + n++, 64).address; }
            @Override public void stop(String address) {
                stopped.add(address);
                fakes.shards.stream().filter(s -> s.address.equals(address)).forEach(FakeShards.Shard::kill);
            }
        };
        // 500 us per token: one shard computes 2000 tokens/s; at 70% utilisation 5000 tokens/s need 4 shards
        rate = skew(312.5, 312.5);
        drive();
        PlacementController c = controller(PlacementController.Settings.defaults().withWindow(100, 1000).withDrainGraceMs(200)
                .withDemand(new ShardDemand(0.7, 2, 3)), pool);
        await("desired 3 (clamped)", 10_000, () -> c.view().desiredShards() == 3);
        await("a third shard joined", 10_000, () -> c.view().shards().size() == 3);
        assertEquals(3, fakes.shards.size(), "at most MAX shards");
        assertTrue(c.view().shards().stream().allMatch(s -> !s.experts().isEmpty()), "the new shard got experts");
        rate = skew(0, 0);
        await("drained back to 2", 15_000, () -> c.view().shards().size() == 2 && stopped.size() == 1);
        for (int l = 0; l < L; l++) for (int e = 0; e < E; e++) {
            int n = 0;
            for (PlacementView.ShardView s : c.view().shards()) for (int[] p : s.experts()) if (p[0] == l && p[1] == e) n++;
            assertTrue(n >= 1, l + "/" + e + " still placed");
        }
        assertFalse(c.view().shards().stream().anyMatch(s -> stopped.contains(s.address())));
    }
}
