package io.lightmesh.expert;

import io.grpc.BindableService;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.ExpertBatch;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.ExpertResult;
import io.lightmesh.proto.v1.ExpertShardInfo;
import io.lightmesh.proto.v1.LayerExperts;
import io.lightmesh.proto.v1.LoadExpertsRequest;
import io.lightmesh.proto.v1.ShardHoldings;
import io.lightmesh.proto.v1.UnloadExpertsRequest;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExpertShardTest {
    @TempDir static Path dir;
    static TinyModel m;

    @BeforeAll
    static void load() throws Exception { m = new TinyModel(dir.resolve("model")); }

    @AfterAll
    static void close() { if (m != null) m.model.close(); }

    static ExpertShard shard(String id, Map<Integer, int[]> held, int slots) {
        return new ExpertShard(ExpertPlacement.Shard.of(id, "127.0.0.1:1", held), m.model, OpenTelemetry.noop(), slots);
    }

    static Map<Integer, int[]> all() {
        Map<Integer, int[]> a = new java.util.HashMap<>();
        for (int l = 0; l < m.L; l++) a.put(l, new int[] {0, 1, 2, 3});
        return a;
    }

    /** The call with only the slots {@code mine} accepts kept (others -1). */
    static ExpertBatch masked(TinyModel.Call c, java.util.function.IntPredicate mine) {
        ExpertBatch full = m.batch(c, 1);
        ExpertBatch.Builder b = full.toBuilder().clearExperts();
        for (int i = 0; i < c.n() * m.k; i++) b.addExperts(mine.test(i) ? c.experts()[i] : -1);
        return b.build();
    }

    @Test
    void aBatchEqualsTheInProcessExpertsHoweverItsSlotsAreSplit() {
        ExpertShard a = shard("A", all(), Integer.MAX_VALUE), b = shard("B", all(), Integer.MAX_VALUE);
        for (int seed = 0; seed < 6; seed++) {
            TinyModel.Call c = m.call(seed, seed % m.L, 1 + seed * 7);
            float[] want = m.inProcess(c);
            assertArrayEquals(want, m.floats(a.compute(m.batch(c, 1)).getCombined(), c.n()), "whole batch on one shard");
            // a random split of the (token, expert) slots over two replicas; the worker adds the two partial sums
            SplittableRandom r = new SplittableRandom(seed);
            boolean[] onA = new boolean[c.n() * m.k];
            for (int i = 0; i < onA.length; i++) onA[i] = r.nextBoolean();
            float[] pa = m.floats(a.compute(masked(c, i -> onA[i])).getCombined(), c.n());
            float[] pb = m.floats(b.compute(masked(c, i -> !onA[i])).getCombined(), c.n());
            float[] sum = new float[pa.length];
            for (int i = 0; i < sum.length; i++) sum[i] = (0f + pb[i]) + pa[i];
            assertArrayEquals(want, sum, "bit-identical whichever replica computed a slot");
        }
        assertTrue(a.info().getTokensComputed() > 0 && b.info().getTokensComputed() > 0);
    }

    @Test
    void loadAndUnloadChangeTheLiveSetWithinTheSlots() throws Exception {
        ExpertShard s = shard("S", Map.of(0, new int[] {0}), 3);
        assertEquals(3, s.slotCapacity());
        assertEquals(1, s.slotsUsed());
        TinyModel.Call c = m.call(1, 0, 5);
        ExpertBatch onlyE1 = masked(c, i -> c.experts()[i] == 1);
        ExpertShard.NotHeldException nh = assertThrows(ExpertShard.NotHeldException.class, () -> s.compute(onlyE1));
        assertArrayEquals(new int[] {1}, nh.pairs().get(0));

        ShardHoldings after = s.load(Map.of(0, new int[] {1, 2}), 4);
        assertEquals(3, after.getSlotsUsed());
        assertEquals(4, after.getPlacementVersion());
        assertEquals(List.of(0, 1, 2), after.getExperts(0).getExpertsList());
        assertTrue(s.holds(0, 2));
        float[] ref = m.floats(shard("R", all(), Integer.MAX_VALUE).compute(onlyE1).getCombined(), c.n());
        assertArrayEquals(ref, m.floats(s.compute(onlyE1).getCombined(), c.n()), "a loaded expert computes like one held from the start");

        assertEquals(3, s.load(Map.of(0, new int[] {1}), 0).getSlotsUsed(), "loading a held pair is a no-op");
        ExpertShard.SlotsExhaustedException full = assertThrows(ExpertShard.SlotsExhaustedException.class, () -> s.load(Map.of(1, new int[] {0, 1}), 5));
        assertTrue(full.getMessage().contains("0 free expert slots of 3"), full.getMessage());
        assertFalse(s.holds(1, 0), "all or nothing");
        assertThrows(IllegalArgumentException.class, () -> s.load(Map.of(m.L, new int[] {0}), 0));
        assertThrows(IllegalArgumentException.class, () -> s.load(Map.of(0, new int[] {m.E}), 0));
        assertThrows(IllegalArgumentException.class, () -> s.load(Map.of(), 0));

        ShardHoldings less = s.unload(Map.of(0, new int[] {1, 3}), 6, 1000);
        assertEquals(2, less.getSlotsUsed(), "unloading a pair not held is ignored");
        assertEquals(6, less.getPlacementVersion());
        assertThrows(ExpertShard.NotHeldException.class, () -> s.compute(onlyE1));
        assertEquals(3, s.load(Map.of(1, new int[] {3}), 0).getSlotsUsed(), "the freed slot is usable");
        assertThrows(IllegalArgumentException.class, () -> shard("X", all(), 5), "more held at start than slots");
        s.close();
    }

    @Test
    void unloadWaitsForBatchesInFlightAndNoBatchIsHalfComputed() throws Exception {
        ExpertShard s = shard("S", all(), Integer.MAX_VALUE);
        TinyModel.Call c = m.call(7, 2, 64);
        ExpertBatch batch = m.batch(c, 1);
        float[] want = m.inProcess(c);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicInteger ok = new AtomicInteger(), refused = new AtomicInteger();
        AtomicReference<Throwable> wrong = new AtomicReference<>();
        Thread[] computing = new Thread[2];
        for (int i = 0; i < computing.length; i++) {
            computing[i] = new Thread(() -> {
                while (!stop.get()) {
                    try {
                        assertArrayEquals(want, m.floats(s.compute(batch).getCombined(), c.n()));
                        ok.incrementAndGet();
                    } catch (ExpertShard.NotHeldException e) {
                        refused.incrementAndGet();
                    } catch (Throwable t) {
                        wrong.compareAndSet(null, t);
                    }
                }
            });
            computing[i].start();
        }
        for (int round = 0; round < 20; round++) {
            Thread.sleep(5);
            s.unload(Map.of(2, new int[] {0, 1, 2, 3}), 0, 5_000);
            Thread.sleep(5);
            s.load(Map.of(2, new int[] {0, 1, 2, 3}), 0);
        }
        stop.set(true);
        for (Thread t : computing) t.join(10_000);
        assertNull(wrong.get(), () -> "a batch saw a pair half-unloaded: " + wrong.get());
        assertTrue(ok.get() > 0, "some batches computed");
        assertEquals(0, s.info().getBatchesInFlight());
    }

    @Test
    void theGrpcServicesAnswerLoadsRefusalsAndLoad() throws Exception {
        ExpertShard s = shard("G", Map.of(0, new int[] {0, 1, 2, 3}), 6);
        Server server = Grpc.serve("127.0.0.1", 0, s.services(), true);
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + server.getPort());
        try {
            var expert = ExpertGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS);
            ShardHoldings h = expert.loadExperts(LoadExpertsRequest.newBuilder().setPlacementVersion(3)
                    .addExperts(LayerExperts.newBuilder().setLayer(1).addExperts(0).addExperts(1)).build());
            assertEquals(6, h.getSlotsUsed());
            assertEquals("G", h.getShardId());
            StatusRuntimeException full = assertThrows(StatusRuntimeException.class, () -> expert.loadExperts(LoadExpertsRequest.newBuilder()
                    .addExperts(LayerExperts.newBuilder().setLayer(2).addExperts(0)).build()));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, full.getStatus().getCode());
            StatusRuntimeException bad = assertThrows(StatusRuntimeException.class, () -> expert.unloadExperts(UnloadExpertsRequest.newBuilder()
                    .addExperts(LayerExperts.newBuilder().setLayer(99).addExperts(0)).build()));
            assertEquals(Status.Code.INVALID_ARGUMENT, bad.getStatus().getCode());
            assertEquals(4, expert.unloadExperts(UnloadExpertsRequest.newBuilder()
                    .addExperts(LayerExperts.newBuilder().setLayer(1).addExperts(0).addExperts(1)).build()).getSlotsUsed());

            // over ComputeStream a batch for a pair not held is refused in band and the stream goes on
            LinkedBlockingQueue<ExpertResult> answers = new LinkedBlockingQueue<>();
            StreamObserver<ExpertBatch> stream = ExpertGrpc.newStub(ch).computeStream(new StreamObserver<>() {
                @Override public void onNext(ExpertResult r) { answers.add(r); }
                @Override public void onError(Throwable t) { answers.add(ExpertResult.newBuilder().setCallId(-1).build()); }
                @Override public void onCompleted() {}
            });
            TinyModel.Call l1 = m.call(2, 1, 4), l0 = m.call(3, 0, 4);
            stream.onNext(m.batch(l1, 10));
            stream.onNext(m.batch(l0, 11).toBuilder().setPlacementVersion(8).build());
            ExpertResult first = answers.poll(10, TimeUnit.SECONDS), second = answers.poll(10, TimeUnit.SECONDS);
            assertNotNull(first);
            assertNotNull(second);
            // batches of one stream compute in parallel and are answered as each finishes: matched by call_id
            ExpertResult refused = first.getCallId() == 10 ? first : second, computed = first.getCallId() == 10 ? second : first;
            assertEquals(10, refused.getCallId());
            assertTrue(refused.hasError());
            assertEquals(Status.Code.INVALID_ARGUMENT.value(), refused.getError().getCode());
            assertEquals(1, refused.getError().getNotHeld(0).getLayer());
            assertEquals(11, computed.getCallId());
            assertFalse(computed.hasError());
            assertArrayEquals(m.inProcess(l0), m.floats(computed.getCombined(), 4));
            stream.onCompleted();
            StatusRuntimeException unary = assertThrows(StatusRuntimeException.class, () -> expert.compute(m.batch(l1, 12)));
            assertEquals(Status.Code.INVALID_ARGUMENT, unary.getStatus().getCode());

            // Describe: holdings, capacity, the tokens computed per (layer, expert), compute time, the newest version seen
            WorkerInfo w = WorkerGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
            ExpertShardInfo info = w.getExpertShard();
            assertEquals(6, info.getSlotCapacity());
            assertEquals(4, info.getSlotsUsed());
            assertEquals(m.L * m.E, info.getTokensCount());
            long[] want = new long[m.L * m.E];
            for (int e : l0.experts()) want[e]++; // layer 0
            for (int i = 0; i < want.length; i++) assertEquals(want[i], info.getTokens(i), "tokens of pair " + i);
            assertEquals(l0.n() * m.k, info.getTokensComputed());
            assertTrue(info.getComputeUs() >= 0);
            assertEquals(8, info.getPlacementVersion());
            assertEquals(3L * m.h * 48 * 4, info.getExpertBytes());
            assertEquals(List.of(0, 1, 2, 3), info.getHeld(0).getExpertsList());
            assertEquals(List.of(0), w.getExperts().getLayersList(), "the first version's form, while the holdings are a product");
        } finally {
            Grpc.shutdown(ch);
            Grpc.shutdown(server);
            s.close();
        }
    }

    /**
     * A placement controller's Describe carries its heartbeat; the shard reports every controller it heard lately back
     * in Describe (id, interval, start, age), which is how two controllers over the same shards find each other.
     */
    @Test
    void theControllersHeartbeatsAreReportedBackInDescribe() throws Exception {
        ExpertShard s = shard("H", Map.of(0, new int[] {0, 1, 2, 3}), 6);
        Server server = Grpc.serve("127.0.0.1", 0, s.services(), true);
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + server.getPort());
        try {
            var worker = WorkerGrpc.newBlockingStub(ch);
            assertEquals(0, worker.withDeadlineAfter(10, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance())
                    .getExpertShard().getControllersCount(), "nothing heard yet");
            for (String id : new String[] {"c1", "c2"}) {
                worker.withDeadlineAfter(10, TimeUnit.SECONDS).describe(DescribeRequest.newBuilder().setController(
                        io.lightmesh.proto.v1.ControllerHeartbeat.newBuilder().setControllerId(id).setIntervalMs(500).setStartedUnixMs(42)).build());
            }
            var seen = worker.withDeadlineAfter(10, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance()).getExpertShard().getControllersList();
            assertEquals(java.util.Set.of("c1", "c2"), seen.stream().map(io.lightmesh.proto.v1.ControllerSeen::getControllerId).collect(java.util.stream.Collectors.toSet()));
            for (var c : seen) {
                assertEquals(500, c.getIntervalMs());
                assertEquals(42, c.getStartedUnixMs());
                assertTrue(io.lightmesh.mesh.ControllerSightings.live(c), c.toString());
            }
        } finally {
            Grpc.shutdown(ch);
            Grpc.shutdown(server);
            s.close();
        }
    }

    /**
     * A batch is computed on the shard's compute pool, not on the thread gRPC delivers it on (with a direct server, as
     * under Quarkus, the Netty event loop, which must answer keepalive PINGs): while a deliberately slow batch runs,
     * Describe, another stream's batch and a unary call are answered; the slow batch is answered when it finishes.
     */
    @Test
    void theShardStaysResponsiveWhileASlowBatchComputes() throws Exception {
        ExpertShard s = new ExpertShard(ExpertPlacement.Shard.of("R", "127.0.0.1:1", all()), m.model, OpenTelemetry.noop(), Integer.MAX_VALUE, 2, 16);
        java.util.concurrent.CountDownLatch slowStarted = new java.util.concurrent.CountDownLatch(1), release = new java.util.concurrent.CountDownLatch(1);
        AtomicReference<String> slowThread = new AtomicReference<>();
        s.beforeCompute = b -> {
            if (b.getCallId() != 100) return;
            slowThread.set(Thread.currentThread().getName());
            slowStarted.countDown();
            try { release.await(30, TimeUnit.SECONDS); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        };
        Server server = Grpc.serve("127.0.0.1", 0, s.services(), true); // handlers on the transport's event loop
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + server.getPort());
        try {
            LinkedBlockingQueue<ExpertResult> slowAnswers = new LinkedBlockingQueue<>(), otherAnswers = new LinkedBlockingQueue<>();
            StreamObserver<ExpertBatch> slow = ExpertGrpc.newStub(ch).computeStream(collect(slowAnswers));
            TinyModel.Call c = m.call(5, 1, 6), d = m.call(6, 2, 3);
            slow.onNext(m.batch(c, 100));
            assertTrue(slowStarted.await(10, TimeUnit.SECONDS), "the slow batch started");
            assertTrue(slowThread.get().startsWith("expert-shard-R-compute-"), "computed on the shard's pool, not " + slowThread.get());

            WorkerInfo w = WorkerGrpc.newBlockingStub(ch).withDeadlineAfter(5, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
            assertEquals(1, w.getExpertShard().getBatchesInFlight(), "Describe answered while the slow batch computes");
            StreamObserver<ExpertBatch> other = ExpertGrpc.newStub(ch).computeStream(collect(otherAnswers));
            other.onNext(m.batch(d, 101));
            ExpertResult fast = otherAnswers.poll(5, TimeUnit.SECONDS);
            assertNotNull(fast, "another stream's batch is answered while the slow one computes");
            assertEquals(101, fast.getCallId());
            assertArrayEquals(m.inProcess(d), m.floats(fast.getCombined(), d.n()));
            ExpertResult unary = ExpertGrpc.newBlockingStub(ch).withDeadlineAfter(5, TimeUnit.SECONDS).compute(m.batch(d, 102));
            assertArrayEquals(m.inProcess(d), m.floats(unary.getCombined(), d.n()));
            assertNull(slowAnswers.peek(), "the slow batch is still computing");

            release.countDown();
            ExpertResult late = slowAnswers.poll(10, TimeUnit.SECONDS);
            assertNotNull(late);
            assertEquals(100, late.getCallId());
            assertArrayEquals(m.inProcess(c), m.floats(late.getCombined(), c.n()));
            slow.onCompleted();
            other.onCompleted();
        } finally {
            release.countDown();
            Grpc.shutdown(ch);
            Grpc.shutdown(server);
            s.close();
        }
    }

    /** A full compute queue refuses a batch at once: in band (RESOURCE_EXHAUSTED) on a stream, as a status on a unary call. */
    @Test
    void aFullComputeQueueRefusesTheBatchInsteadOfBlocking() throws Exception {
        ExpertShard s = new ExpertShard(ExpertPlacement.Shard.of("Q", "127.0.0.1:1", all()), m.model, OpenTelemetry.noop(), Integer.MAX_VALUE, 1, 1);
        java.util.concurrent.CountDownLatch slowStarted = new java.util.concurrent.CountDownLatch(1), release = new java.util.concurrent.CountDownLatch(1);
        s.beforeCompute = b -> {
            if (b.getCallId() != 200) return;
            slowStarted.countDown();
            try { release.await(30, TimeUnit.SECONDS); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        };
        Server server = Grpc.serve("127.0.0.1", 0, s.services(), true);
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + server.getPort());
        try {
            LinkedBlockingQueue<ExpertResult> answers = new LinkedBlockingQueue<>();
            StreamObserver<ExpertBatch> stream = ExpertGrpc.newStub(ch).computeStream(collect(answers));
            TinyModel.Call c = m.call(7, 0, 2);
            stream.onNext(m.batch(c, 200)); // takes the one compute thread
            assertTrue(slowStarted.await(10, TimeUnit.SECONDS));
            stream.onNext(m.batch(c, 201)); // takes the one queue place
            stream.onNext(m.batch(c, 202)); // no room
            ExpertResult refused = answers.poll(5, TimeUnit.SECONDS);
            assertNotNull(refused, "refused at once, not after the slow batch");
            assertEquals(202, refused.getCallId());
            assertEquals(Status.Code.RESOURCE_EXHAUSTED.value(), refused.getError().getCode());
            StatusRuntimeException unary = assertThrows(StatusRuntimeException.class,
                    () -> ExpertGrpc.newBlockingStub(ch).withDeadlineAfter(5, TimeUnit.SECONDS).compute(m.batch(c, 203)));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, unary.getStatus().getCode());

            release.countDown();
            java.util.Set<Long> computed = new java.util.HashSet<>();
            for (int i = 0; i < 2; i++) {
                ExpertResult r = answers.poll(10, TimeUnit.SECONDS);
                assertNotNull(r);
                assertFalse(r.hasError());
                assertArrayEquals(m.inProcess(c), m.floats(r.getCombined(), c.n()));
                computed.add(r.getCallId());
            }
            assertEquals(java.util.Set.of(200L, 201L), computed, "the running and the queued batch are answered");
            stream.onCompleted();
        } finally {
            release.countDown();
            Grpc.shutdown(ch);
            Grpc.shutdown(server);
            s.close();
        }
    }

    /**
     * With the priority gate on (one batch at a time at the device, as on a GPU), decode batches that arrive while
     * prefill batches wait are computed first: a prefill batch holds the device, two more prefill batches queue, then
     * two decode batches on another stream (the decode worker's) overtake them; every answer is the in-process bits.
     */
    @Test
    void decodeBatchesOvertakeQueuedPrefillBatches() throws Exception {
        ExpertShard s = new ExpertShard(ExpertPlacement.Shard.of("P", "127.0.0.1:1", all()), m.model, OpenTelemetry.noop(), Integer.MAX_VALUE,
                4, 16, 1, 60_000, false);
        java.util.concurrent.CountDownLatch firstStarted = new java.util.concurrent.CountDownLatch(1), release = new java.util.concurrent.CountDownLatch(1);
        List<Long> computed = new java.util.concurrent.CopyOnWriteArrayList<>();
        s.atDevice = b -> { // runs with the device's turn held
            computed.add(b.getCallId());
            if (b.getCallId() != 300) return;
            firstStarted.countDown();
            try { release.await(30, TimeUnit.SECONDS); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        };
        Server server = Grpc.serve("127.0.0.1", 0, s.services(), true);
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + server.getPort());
        try {
            LinkedBlockingQueue<ExpertResult> prefillAnswers = new LinkedBlockingQueue<>(), decodeAnswers = new LinkedBlockingQueue<>();
            StreamObserver<ExpertBatch> prefill = ExpertGrpc.newStub(ch).computeStream(collect(prefillAnswers));
            StreamObserver<ExpertBatch> decode = ExpertGrpc.newStub(ch).computeStream(collect(decodeAnswers));
            TinyModel.Call big = m.call(11, 3, 24), small = m.call(12, 3, 1);
            prefill.onNext(classed(m.batch(big, 300), io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_PREFILL));
            assertTrue(firstStarted.await(10, TimeUnit.SECONDS));
            prefill.onNext(classed(m.batch(big, 301), io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_PREFILL));
            prefill.onNext(classed(m.batch(big, 302), io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_UNSPECIFIED)); // as prefill
            awaitGate(s, 0, 2);
            decode.onNext(classed(m.batch(small, 303), io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE));
            decode.onNext(classed(m.batch(small, 304), io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE));
            awaitGate(s, 2, 2);
            release.countDown();
            for (int i = 0; i < 3; i++) {
                ExpertResult r = prefillAnswers.poll(10, TimeUnit.SECONDS);
                assertNotNull(r);
                assertArrayEquals(m.inProcess(big), m.floats(r.getCombined(), big.n()));
            }
            for (int i = 0; i < 2; i++) {
                ExpertResult r = decodeAnswers.poll(10, TimeUnit.SECONDS);
                assertNotNull(r);
                assertArrayEquals(m.inProcess(small), m.floats(r.getCombined(), small.n()));
            }
            // the two queued prefill batches reach the gate from two pool threads, in either order (the gate is FIFO by
            // the order of its acquire calls, not of the stream's arrivals): only the decode batches' place is fixed
            assertEquals(List.of(300L, 303L, 304L), computed.subList(0, 3), "decode batches computed before the prefill batches queued ahead of them: " + computed);
            assertEquals(java.util.Set.of(301L, 302L), java.util.Set.copyOf(computed.subList(3, 5)), computed.toString());
            assertEquals(2, s.gateStats().gate().decodeOvertakes());
            prefill.onCompleted();
            decode.onCompleted();
        } finally {
            release.countDown();
            Grpc.shutdown(ch);
            Grpc.shutdown(server);
            s.close();
        }
    }

    /**
     * lightmesh.shard.inlineDecode: a decode batch that finds the device free is computed on the thread gRPC read it on
     * (no pool hand-off), the shard's own event loop; a prefill batch still goes to the pool; both answer the in-process bits.
     */
    @Test
    void aDecodeBatchFindingTheDeviceFreeIsComputedWhereItWasRead() throws Exception {
        ExpertShard s = new ExpertShard(ExpertPlacement.Shard.of("I", "127.0.0.1:1", all()), m.model, OpenTelemetry.noop(), Integer.MAX_VALUE,
                2, 16, 1, 20, true);
        java.util.Map<Long, String> threads = new java.util.concurrent.ConcurrentHashMap<>();
        s.atDevice = b -> threads.put(b.getCallId(), Thread.currentThread().getName());
        Server server = s.serve("127.0.0.1", 0); // its own event loop: inline batches hold up no other server
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + server.getPort());
        try {
            LinkedBlockingQueue<ExpertResult> answers = new LinkedBlockingQueue<>();
            StreamObserver<ExpertBatch> stream = ExpertGrpc.newStub(ch).computeStream(collect(answers));
            TinyModel.Call c = m.call(13, 2, 2);
            stream.onNext(classed(m.batch(c, 400), io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE));
            ExpertResult r = answers.poll(10, TimeUnit.SECONDS);
            assertNotNull(r);
            assertArrayEquals(m.inProcess(c), m.floats(r.getCombined(), c.n()));
            stream.onNext(classed(m.batch(c, 401), io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_PREFILL));
            r = answers.poll(10, TimeUnit.SECONDS);
            assertNotNull(r);
            assertArrayEquals(m.inProcess(c), m.floats(r.getCombined(), c.n()));
            assertEquals("expert-shard-I-loop", threads.get(400L), "decode computed on the shard's own transport thread");
            assertTrue(threads.get(401L).startsWith("expert-shard-I-compute-"), "prefill on the pool, not " + threads.get(401L));
            assertEquals(1, s.gateStats().inlined());
            stream.onCompleted();
        } finally {
            Grpc.shutdown(ch);
            Grpc.shutdown(server);
            s.close();
        }
    }

    static ExpertBatch classed(ExpertBatch b, io.lightmesh.proto.v1.ExpertCallClass c) { return b.toBuilder().setCallClass(c).build(); }

    /** Waits until the shard's gate lists this many waiting decode and prefill batches. */
    static void awaitGate(ExpertShard s, int decode, int prefill) throws InterruptedException {
        long until = System.nanoTime() + 10_000_000_000L;
        while (s.gateStats().gate().decodeWaiting() != decode || s.gateStats().gate().prefillWaiting() != prefill) {
            assertTrue(System.nanoTime() < until, "waiting at the gate: " + s.gateStats());
            Thread.sleep(1);
        }
    }

    static StreamObserver<ExpertResult> collect(LinkedBlockingQueue<ExpertResult> answers) {
        return new StreamObserver<>() {
            @Override public void onNext(ExpertResult r) { answers.add(r); }
            @Override public void onError(Throwable t) { answers.add(ExpertResult.newBuilder().setCallId(-1).build()); }
            @Override public void onCompleted() {}
        };
    }

    /**
     * A bf16 batch (the opt-in wire) is answered in bf16: the rows widened, computed in fp32, the answer rounded, so it
     * is the fp32 answer rounded to bf16 within the rounding of the inputs (bounded at 1e-2 relative, as the
     * tensor-core bf16 products are); a bf16 batch whose hidden bytes are sized for fp32 is refused as malformed.
     */
    @Test
    void aBf16BatchIsAnsweredInBf16WithinItsBound() {
        ExpertShard a = shard("A", all(), Integer.MAX_VALUE);
        io.lightmesh.proto.v1.ActivationDType bf16 = io.lightmesh.proto.v1.ActivationDType.ACTIVATION_DTYPE_BF16;
        for (int seed = 0; seed < 4; seed++) {
            TinyModel.Call c = m.call(50 + seed, seed % m.L, 1 + seed * 9);
            float[] want = m.inProcess(c);
            ExpertBatch b = m.batch(c, 1).toBuilder().setDtype(bf16).setHidden(io.lightmesh.mesh.WireRows.encode(c.x(), c.n() * m.h, bf16)).build();
            ExpertResult r = a.compute(b);
            assertEquals(bf16, r.getDtype());
            assertEquals(c.n() * m.h * 2, r.getCombined().size(), "two bytes a value");
            float[] got = new float[c.n() * m.h];
            io.lightmesh.mesh.WireRows.reader(r.getCombined(), bf16).row(0, c.n() * m.h, got, 0);
            double err = 0, ref = 0;
            for (int i = 0; i < want.length; i++) { err += (double) (got[i] - want[i]) * (got[i] - want[i]); ref += (double) want[i] * want[i]; }
            double rel = Math.sqrt(err / ref);
            assertTrue(rel > 0 && rel <= 1e-2, "bf16 answer's relative error " + rel);
        }
        TinyModel.Call c = m.call(60, 0, 3);
        ExpertBatch wrongSize = m.batch(c, 2).toBuilder().setDtype(bf16).build(); // fp32 bytes, labelled bf16
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> a.compute(wrongSize));
        assertTrue(e.getMessage().contains("* 2"), e.getMessage());
        a.close();
    }

    @Test
    void slotCapacityComesFromSlotsAndMemory() {
        long bytes = ExpertShard.expertBytes(m.model);
        assertEquals(m.L * m.E, ExpertShard.slotCapacity(m.model, java.util.OptionalInt.empty(), java.util.OptionalLong.empty()));
        assertEquals(5, ExpertShard.slotCapacity(m.model, java.util.OptionalInt.of(5), java.util.OptionalLong.empty()));
        assertEquals(3, ExpertShard.slotCapacity(m.model, java.util.OptionalInt.of(5), java.util.OptionalLong.of(3 * bytes + 1)));
    }
}
