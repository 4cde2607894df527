package io.lightmesh.expert;

import io.grpc.Server;
import io.grpc.Status;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.LivePlacement;
import io.lightmesh.mesh.PlacementSource;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.proto.v1.ExpertBatch;
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
import java.util.concurrent.TimeUnit;

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

    /** A shard whose every batch waits {@code delayMs} before it is computed (a slow host or link). */
    Running startSlow(String id, Map<Integer, int[]> held, long delayMs) throws IOException {
        int port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) { port = s.getLocalPort(); }
        ExpertShard shard = new ExpertShard(ExpertPlacement.Shard.of(id, "127.0.0.1:" + port, held), m.model, OpenTelemetry.noop(), Integer.MAX_VALUE);
        io.grpc.ServerInterceptor delay = new io.grpc.ServerInterceptor() {
            @Override
            public <Q, A> io.grpc.ServerCall.Listener<Q> interceptCall(io.grpc.ServerCall<Q, A> call, io.grpc.Metadata headers,
                                                                     io.grpc.ServerCallHandler<Q, A> next) {
                return new io.grpc.ForwardingServerCallListener.SimpleForwardingServerCallListener<>(next.startCall(call, headers)) {
                    @Override public void onMessage(Q message) {
                        try { Thread.sleep(delayMs); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
                        super.onMessage(message);
                    }
                };
            }
        };
        List<io.grpc.BindableService> services = shard.services().stream()
                .map(svc -> (io.grpc.BindableService) () -> io.grpc.ServerInterceptors.intercept(svc, delay)).toList();
        Running r = new Running(shard, Grpc.serve("127.0.0.1", port, services, false)); // an executor: the sleep must not hold the shared event loop
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
            assertTrue(share > 0.45 && share < 0.55, "even: replica A computed " + ta + " of " + (ta + tb));
            assertEquals(0, replicated.resentSlots());
        }
    }

    /** The call as the device path's micro-batches make it: {@link RemoteExperts#runAsync} on {@code pool}, awaited (bounded). */
    static float[] runAsync(RemoteExperts r, TinyModel.Call c, java.util.concurrent.Executor pool) throws Exception {
        float[] out = new float[c.n() * m.h];
        java.util.Arrays.fill(out, Float.NaN); // the call overwrites it
        r.runAsync(c.layer(), c.x(), c.n(), m.k, c.experts(), c.weights(), out, pool).get(30, java.util.concurrent.TimeUnit.SECONDS);
        return out;
    }

    /**
     * runAsync sends from the caller's thread and completes where the answers land: no pool thread for a clean call,
     * two calls in flight at once (the ping-pong's micro-batches), the in-process bits. A replica killed midway: the
     * call is settled as run() would (the shard dead and reported, its rows sent again) and done again on the pool,
     * with the same bits.
     */
    @Test
    void runAsyncNeedsNoPoolThreadAndFailsOverAsRunDoes() throws Exception {
        Running a = start("A", experts(0, 1, 2, 3)), b = start("B", experts(0, 1, 2, 3));
        List<LivePlacement.Report> reports = new CopyOnWriteArrayList<>();
        java.util.concurrent.atomic.AtomicInteger pooled = new java.util.concurrent.atomic.AtomicInteger();
        ExecutorService threads = Executors.newCachedThreadPool();
        java.util.concurrent.Executor pool = task -> { pooled.incrementAndGet(); threads.execute(task); };
        try (RemoteExperts r = remote(new LivePlacement(placement(1, a, b), reports::add), 2_000)) {
            for (int i = 0; i < 12; i++) {
                TinyModel.Call c1 = m.call(500 + i, i % m.L, 1 + i), c2 = m.call(600 + i, (i + 1) % m.L, 8);
                float[] o1 = new float[c1.n() * m.h], o2 = new float[c2.n() * m.h];
                var f1 = r.runAsync(c1.layer(), c1.x(), c1.n(), m.k, c1.experts(), c1.weights(), o1, pool);
                var f2 = r.runAsync(c2.layer(), c2.x(), c2.n(), m.k, c2.experts(), c2.weights(), o2, pool);
                f2.get(30, java.util.concurrent.TimeUnit.SECONDS);
                f1.get(30, java.util.concurrent.TimeUnit.SECONDS);
                assertArrayEquals(m.inProcess(c1), o1, "call " + i + " (first in flight)");
                assertArrayEquals(m.inProcess(c2), o2, "call " + i + " (second in flight)");
            }
            assertEquals(0, pooled.get(), "clean calls ran on no pool thread");
            assertEquals(24, r.breakdown().calls(), "each counted once");
            a.kill();
            for (int i = 0; i < 4; i++) {
                TinyModel.Call c = m.call(700 + i, i % m.L, 16);
                assertArrayEquals(m.inProcess(c), runAsync(r, c, pool), "rows of the killed shard recomputed by its replica");
            }
            assertTrue(pooled.get() >= 1, "the first call after the kill went again through run() on the pool");
            assertTrue(r.resentSlots() > 0, "the killed shard's slots were sent again");
            assertEquals(java.util.Set.of("A"), r.avoidedShards());
            assertEquals("A", reports.get(0).shard().id());
        } finally {
            threads.shutdownNow();
        }
    }

    /** Relative L2 error of {@code got} against {@code want}. */
    static double relativeError(float[] got, float[] want) {
        double err = 0, ref = 0;
        for (int i = 0; i < want.length; i++) { err += (double) (got[i] - want[i]) * (got[i] - want[i]); ref += (double) want[i] * want[i]; }
        return Math.sqrt(err / Math.max(ref, 1e-30));
    }

    /**
     * The opt-in bf16 wire: rows and answers rounded to bf16 (half the bytes), so not the fp32 bits; its error against
     * the in-process experts is bounded as the tensor-core bf16 products' is (1e-2 relative; bf16 keeps 8 bits, a
     * row's rounding is <= 2^-8 relative). The fp32 wire, on the same shards, stays bit-identical.
     */
    @Test
    void theBf16WireHalvesTheBytesWithinTheBf16BoundAndF32StaysExact() throws Exception {
        Running x = start("X", experts(0, 2)), y = start("Y", experts(1, 3));
        ExpertPlacement p = placement(0, x, y);
        RemoteExperts.Settings base = new RemoteExperts.Settings(10_000, 1_000, 5_000, "test");
        assertEquals(io.lightmesh.proto.v1.ActivationDType.ACTIVATION_DTYPE_F32, base.wire(), "fp32 unless asked");
        try (RemoteExperts bf16 = new RemoteExperts(PlacementSource.fixed(p), m.h, base.withWire(io.lightmesh.proto.v1.ActivationDType.ACTIVATION_DTYPE_BF16), false, new int[] {m.L, m.E});
             RemoteExperts f32 = new RemoteExperts(PlacementSource.fixed(p), m.h, base, false, new int[] {m.L, m.E})) {
            double worst = 0;
            for (int seed = 0; seed < 12; seed++) {
                TinyModel.Call c = m.call(300 + seed, seed % m.L, 1 + 5 * seed);
                float[] want = m.inProcess(c), got = run(bf16, c);
                assertArrayEquals(want, run(f32, c), "fp32 wire: the in-process bits");
                double e = relativeError(got, want);
                assertTrue(e <= 1e-2, "bf16 wire: relative error " + e + " over 1e-2 (seed " + seed + ")");
                worst = Math.max(worst, e);
            }
            assertTrue(worst > 0, "bf16 rounding shows: the bf16 wire really ran");
            assertEquals(0, bf16.resentSlots(), "these shards speak bf16: nothing sent twice");
            RemoteExperts.Breakdown b = bf16.breakdown();
            assertEquals(12, b.calls());
            assertTrue(b.roundTripUs() >= b.packUs() + b.sendUs() + b.unpackUs() && b.parseUs() > 0 && b.sendUs() > 0,
                    "the caller's parts are timed within the round trip: " + b);
        }
    }

    /**
     * A shard from before bf16 refuses a bf16 batch as malformed, in band (INVALID_ARGUMENT, nothing not held): the
     * worker sends it the same rows as fp32, once, and fp32 from then on; the outputs are the in-process bits.
     */
    @Test
    void aShardThatRefusesBf16IsSentF32() throws Exception {
        Running x = start("X", experts(0, 2));
        int port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) { port = s.getLocalPort(); }
        ExpertShard inner = new ExpertShard(ExpertPlacement.Shard.of("OLD", "127.0.0.1:" + port, experts(1, 3)), m.model, OpenTelemetry.noop(), Integer.MAX_VALUE);
        java.util.concurrent.atomic.AtomicInteger refused = new java.util.concurrent.atomic.AtomicInteger();
        // the Expert service as the shard served it before bf16: a bf16 batch answered with the old in-band refusal
        io.grpc.BindableService old = new io.lightmesh.proto.v1.ExpertGrpc.ExpertImplBase() {
            @Override
            public io.grpc.stub.StreamObserver<io.lightmesh.proto.v1.ExpertBatch> computeStream(io.grpc.stub.StreamObserver<io.lightmesh.proto.v1.ExpertResult> out) {
                return new io.grpc.stub.StreamObserver<>() {
                    @Override public void onNext(io.lightmesh.proto.v1.ExpertBatch b) {
                        if (b.getDtype() == io.lightmesh.proto.v1.ActivationDType.ACTIVATION_DTYPE_BF16) {
                            refused.incrementAndGet();
                            out.onNext(io.lightmesh.proto.v1.ExpertResult.newBuilder().setCallId(b.getCallId()).setLayer(b.getLayer())
                                    .setError(io.lightmesh.proto.v1.BatchError.newBuilder().setCode(Status.Code.INVALID_ARGUMENT.value())
                                            .setMessage("bf16 activations are not supported yet")).build());
                        } else {
                            out.onNext(inner.compute(b));
                        }
                    }
                    @Override public void onError(Throwable t) {}
                    @Override public void onCompleted() { out.onCompleted(); }
                };
            }
        };
        Running y = new Running(inner, Grpc.serve("127.0.0.1", port, List.of(old), true));
        running.add(y);
        RemoteExperts.Settings s = new RemoteExperts.Settings(10_000, 1_000, 5_000, "test").withWire(io.lightmesh.proto.v1.ActivationDType.ACTIVATION_DTYPE_BF16);
        try (RemoteExperts r = new RemoteExperts(PlacementSource.fixed(placement(0, x, y)), m.h, s, false, new int[] {m.L, m.E})) {
            for (int seed = 0; seed < 6; seed++) {
                TinyModel.Call c = m.call(400 + seed, seed % m.L, 6);
                float[] got = run(r, c), want = m.inProcess(c);
                assertTrue(relativeError(got, want) <= 1e-2, "seed " + seed);
            }
            assertEquals(1, refused.get(), "refused once, then sent fp32");
            assertTrue(r.resentSlots() > 0 && r.failedBatches() == 0, "its rows went again; the shard was not taken for dead");
            assertTrue(r.avoidedShards().isEmpty());
        }
    }

    /**
     * A prefill worker's calls (Settings.callClass PREFILL, chunkRows 3) reach each shard as batches of at most 3 rows,
     * all classed PREFILL, and add up to the in-process bits (each row is in exactly one chunk per shard), through run
     * and runAsync alike; a decode worker's calls are classed DECODE and never split.
     */
    @Test
    void aPrefillCallsRowsGoInChunksOfBoundedRowsAndKeepTheBits() throws Exception {
        Running x = start("X", experts(0, 2)), y = start("Y", experts(1, 3));
        List<ExpertBatch> seen = new java.util.concurrent.CopyOnWriteArrayList<>();
        for (Running r : List.of(x, y)) r.shard().beforeCompute = seen::add;
        RemoteExperts.Settings base = new RemoteExperts.Settings(10_000, 1_000, 5_000, "test");
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try (RemoteExperts prefill = new RemoteExperts(PlacementSource.fixed(placement(0, x, y)), m.h,
                     base.withCallClass(io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_PREFILL).withChunkRows(3), false, new int[] {m.L, m.E});
             RemoteExperts decode = new RemoteExperts(PlacementSource.fixed(placement(0, x, y)), m.h,
                     base.withCallClass(io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE).withChunkRows(3), false, new int[] {m.L, m.E})) {
            for (int seed = 0; seed < 6; seed++) {
                TinyModel.Call c = m.call(800 + seed, seed % m.L, 5 + 3 * seed);
                float[] want = m.inProcess(c);
                assertArrayEquals(want, run(prefill, c), "run, seed " + seed);
                float[] out = new float[c.n() * m.h];
                prefill.runAsync(c.layer(), c.x(), c.n(), m.k, c.experts(), c.weights(), out, pool).get(10, TimeUnit.SECONDS);
                assertArrayEquals(want, out, "runAsync, seed " + seed);
            }
            assertTrue(prefill.extraChunks() > 0);
            assertTrue(seen.stream().allMatch(b -> b.getNumTokens() <= 3), "no prefill batch above 3 rows");
            assertTrue(seen.stream().allMatch(b -> b.getCallClass() == io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_PREFILL));
            seen.clear();
            TinyModel.Call c = m.call(900, 1, 12);
            assertArrayEquals(m.inProcess(c), run(decode, c));
            assertEquals(0, decode.extraChunks());
            assertEquals(2, seen.size(), "one batch per shard");
            assertTrue(seen.stream().allMatch(b -> b.getCallClass() == io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE && b.getNumTokens() > 3));
        } finally {
            pool.shutdown();
        }
    }

    @Test
    void replicasOfEqualSpeedGetEvenShares() throws Exception {
        Running[] rs = {start("A", experts(0, 1, 2, 3)), start("B", experts(0, 1, 2, 3)), start("C", experts(0, 1, 2, 3)), start("D", experts(0, 1, 2, 3))};
        try (RemoteExperts r = remote(PlacementSource.fixed(placement(0, rs)), 1_000)) {
            long slots = 0;
            for (int i = 0; i < 60; i++) {
                TinyModel.Call c = m.call(500 + i, i % m.L, 1 + i % 16); // odd sizes too, one-token decode steps
                assertArrayEquals(m.inProcess(c), run(r, c));
                slots += (long) c.n() * m.k;
            }
            long[] t = java.util.Arrays.stream(rs).mapToLong(x -> x.shard().info().getTokensComputed()).toArray();
            assertEquals(slots, java.util.Arrays.stream(t).sum());
            double mean = slots / 4.0, max = java.util.Arrays.stream(t).max().orElseThrow();
            assertTrue(max / mean <= 1.05, "rows per replica " + java.util.Arrays.toString(t) + ": imbalance " + max / mean);
            assertEquals(java.util.Map.of("A", 1.0, "B", 1.0, "C", 1.0, "D", 1.0), r.replicaWeights(), "nobody measurably slow");
        }
    }

    @Test
    void aMeasurablySlowerReplicaGetsFewerRows() throws Exception {
        Running a = start("A", experts(0, 1, 2, 3));
        Running b = startSlow("B", experts(0, 1, 2, 3), 15);
        try (RemoteExperts r = remote(PlacementSource.fixed(placement(0, a, b)), 1_000)) {
            long until = System.nanoTime() + 6_000_000_000L;
            while (System.nanoTime() < until && r.replicaWeights().getOrDefault("B", 1.0) > 0.5) {
                TinyModel.Call c = m.call(System.nanoTime(), 0, 32);
                assertArrayEquals(m.inProcess(c), run(r, c));
            }
            double wb = r.replicaWeights().get("B");
            assertTrue(wb <= 0.5, "B's weight went down (damped, once a second): " + r.replicaWeights());
            assertEquals(1.0, r.replicaWeights().get("A"));
            long ta = a.shard().info().getTokensComputed(), tb = b.shard().info().getTokensComputed();
            for (int i = 0; i < 20; i++) {
                TinyModel.Call c = m.call(700 + i, 1, 32);
                assertArrayEquals(m.inProcess(c), run(r, c), "same result whoever computed the rows");
            }
            long da = a.shard().info().getTokensComputed() - ta, db = b.shard().info().getTokensComputed() - tb;
            assertTrue(db > 0, "a slow replica keeps some rows (and so stays measured)");
            assertTrue(db < 0.4 * (da + db), "B got " + db + " of " + (da + db) + " slots at weight " + wb);
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
    void aBusyReplicasRowsGoToTheOtherAndItIsNotMarkedDead() throws Exception {
        Running a = start("A", experts(0, 1, 2, 3));
        int port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) { port = s.getLocalPort(); }
        // B: one compute thread and one queue place, both taken by batches held until released
        ExpertShard busy = new ExpertShard(ExpertPlacement.Shard.of("B", "127.0.0.1:" + port, experts(0, 1, 2, 3)), m.model,
                OpenTelemetry.noop(), Integer.MAX_VALUE, 1, 1);
        java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1), held = new java.util.concurrent.CountDownLatch(1);
        busy.beforeCompute = batch -> {
            if (batch.getCallId() < 900) return;
            held.countDown();
            try { release.await(30, java.util.concurrent.TimeUnit.SECONDS); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        };
        Running b = new Running(busy, Grpc.serve("127.0.0.1", port, busy.services(), true));
        running.add(b);
        io.grpc.ManagedChannel ch = Grpc.channel("127.0.0.1:" + port);
        try (RemoteExperts r = remote(PlacementSource.fixed(placement(0, a, b)), 2_000)) {
            var stream = io.lightmesh.proto.v1.ExpertGrpc.newStub(ch).computeStream(new io.grpc.stub.StreamObserver<>() {
                @Override public void onNext(io.lightmesh.proto.v1.ExpertResult v) {}
                @Override public void onError(Throwable t) {}
                @Override public void onCompleted() {}
            });
            TinyModel.Call filler = m.call(5, 0, 2);
            stream.onNext(m.batch(filler, 900)); // takes B's compute thread
            assertTrue(held.await(10, java.util.concurrent.TimeUnit.SECONDS));
            stream.onNext(m.batch(filler, 901)); // takes B's queue place
            for (int i = 0; i < 4; i++) {
                TinyModel.Call c = m.call(300 + i, i % m.L, 16);
                assertArrayEquals(m.inProcess(c), run(r, c), "B's rows recomputed by A while B is busy");
            }
            assertTrue(r.resentSlots() > 0, "B refused its rows (RESOURCE_EXHAUSTED) and they went to A");
            assertTrue(r.avoidedShards().isEmpty(), "a busy shard is not a dead one: " + r.avoidedShards());
            release.countDown();
            stream.onCompleted();
        } finally {
            release.countDown();
            Grpc.shutdown(ch);
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
