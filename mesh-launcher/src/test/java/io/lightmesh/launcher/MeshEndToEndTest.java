package io.lightmesh.launcher;

import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.InProcessGeneration;
import io.lightmesh.mesh.StopRules;
import io.lightmesh.prefill.PrefillWorker;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;
import org.apache.kafka.common.test.KafkaClusterTestKit;
import org.apache.kafka.common.test.TestKitNodes;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The mesh end to end: a real Kafka broker (KafkaClusterTestKit, KRaft), real gRPC over loopback between a router,
 * two prefill workers, two decode workers and two expert shards (experts remote), on a seeded synthetic model of
 * the M1 architecture. Greedy output must equal the in-process engine's, token for token.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class MeshEndToEndTest {
    @TempDir static Path dir;
    static KafkaClusterTestKit kafka;
    static EmbeddedMesh mesh;
    static ManagedChannel channel;
    static InferenceGrpc.InferenceBlockingStub client;

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        SyntheticCheckpoint.write(model, SyntheticCheckpoint.Shape.tiny(), DType.F32, 11, false);
        kafka = new KafkaClusterTestKit.Builder(new TestKitNodes.Builder().setCombined(true).setNumBrokerNodes(1).setNumControllerNodes(1).build())
                .setConfigProp("group.initial.rebalance.delay.ms", "0")
                .setConfigProp("offsets.topic.replication.factor", "1")
                .setConfigProp("offsets.topic.num.partitions", "4")
                .setConfigProp("transaction.state.log.replication.factor", "1")
                .setConfigProp("transaction.state.log.min.isr", "1").build();
        kafka.format();
        kafka.startup();
        kafka.waitForReadyBrokers();
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, 0, kafka.bootstrapServers(), dir, 2, 2, 2,
                1L << 30, 32, "lightmesh.requests.v1", 64, 32);
        mesh = EmbeddedMesh.start(o);
        assertTrue(mesh.awaitReady(60_000), () -> "mesh not ready: " + mesh.router().health());
        channel = Grpc.channel(mesh.routerTarget());
        client = InferenceGrpc.newBlockingStub(channel);
    }

    @AfterAll
    static void stop() throws Exception {
        Grpc.shutdown(channel);
        if (mesh != null) mesh.close();
        if (kafka != null) kafka.close();
    }

    static int[] prompt(long seed, int len) { return new SplittableRandom(seed).ints(len, 0, 512).toArray(); }

    static GenerateRequest greedy(int[] prompt, int maxNew) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int t : prompt) ids.addIds(t);
        return GenerateRequest.newBuilder().setTokenIds(ids).setReturnTokenIds(true)
                .setSampling(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(maxNew).setIgnoreEos(true)).build();
    }

    /** What the in-process engine generates for the same request (experts in-process, no batching). */
    static List<Integer> inProcess(int[] prompt, int maxNew) {
        GenerationSpec.Builder s = GenerationSpec.newBuilder().setRequestId("ref")
                .setSampling(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(maxNew).setIgnoreEos(true));
        for (int t : prompt) s.addPromptTokens(t);
        return InProcessGeneration.run(mesh.model().model(), new StopRules(mesh.model().eosId()), s.build(), t -> {}).tokens();
    }

    static void awaitNoLiveSequences() throws InterruptedException {
        long until = System.currentTimeMillis() + 10_000;
        while (System.currentTimeMillis() < until) {
            if (mesh.decoders().stream().allMatch(d -> d.worker().liveSequences() == 0 && d.worker().usedBytes() == 0)) return;
            Thread.sleep(50);
        }
        for (var d : mesh.decoders()) {
            assertEquals(0, d.worker().liveSequences(), d.id() + " still holds sequences");
            assertEquals(0, d.worker().usedBytes(), d.id() + " still holds state bytes");
        }
    }

    @Test @Order(1)
    void greedySingleRequestMatchesInProcess() {
        int[] p = prompt(1, 40);
        GenerateResponse r = client.withDeadlineAfter(60, TimeUnit.SECONDS).generate(greedy(p, 24));
        assertEquals(inProcess(p, 24), r.getTokenIdsList());
        assertEquals(FinishReason.FINISH_REASON_LENGTH, r.getFinishReason());
        assertEquals(40, r.getUsage().getPromptTokens());
        assertEquals(24, r.getUsage().getCompletionTokens());
        assertTrue(r.getStats().getStateBytes() > 0, "state bytes moved are reported");
    }

    @Test @Order(2)
    void sixteenConcurrentMixedLengthsMatchInProcess() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(16);
        try {
            List<Future<List<Integer>>> got = new ArrayList<>();
            List<List<Integer>> want = new ArrayList<>();
            for (int i = 0; i < 16; i++) {
                int[] p = prompt(100 + i, 5 + 9 * i);      // 5 .. 140 tokens: within one block up to several
                int maxNew = 4 + (i * 7) % 29;
                want.add(inProcess(p, maxNew));
                got.add(pool.submit(() -> client.withDeadlineAfter(120, TimeUnit.SECONDS).generate(greedy(p, maxNew)).getTokenIdsList()));
            }
            for (int i = 0; i < 16; i++) assertEquals(want.get(i), got.get(i).get(), "request " + i);
        } finally {
            pool.shutdownNow();
        }
        awaitNoLiveSequences();
    }

    @Test @Order(3)
    void streamingDeliversEveryTokenThenUsage() {
        int[] p = prompt(3, 20);
        Iterator<GenerateChunk> it = InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(60, TimeUnit.SECONDS).generateStream(greedy(p, 12));
        List<Integer> tokens = new ArrayList<>();
        int chunks = 0;
        GenerateChunk last = null;
        while (it.hasNext()) {
            last = it.next();
            tokens.addAll(last.getTokenIdsList());
            chunks++;
        }
        assertEquals(inProcess(p, 12), tokens);
        assertTrue(chunks >= 12, "one chunk per token at least, got " + chunks);
        assertEquals(FinishReason.FINISH_REASON_LENGTH, last.getFinishReason());
        assertEquals(12, last.getUsage().getCompletionTokens());
    }

    @Test @Order(4)
    void invalidRequestIsRejectedClearlyAndOthersAreUnaffected() {
        GenerateRequest bad = greedy(new int[]{1, 2, 99999}, 4);
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.generate(bad));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("99999"), e.getStatus().getDescription());
        StatusRuntimeException none = assertThrows(StatusRuntimeException.class, () -> client.generate(GenerateRequest.getDefaultInstance()));
        assertEquals(Status.Code.INVALID_ARGUMENT, none.getStatus().getCode());
        int[] p = prompt(4, 10);
        assertEquals(inProcess(p, 6), client.generate(greedy(p, 6)).getTokenIdsList());
    }

    @Test @Order(5)
    void cancellingAStreamStopsWorkAndFreesState() throws Exception {
        int[] p = prompt(5, 30);
        Context.CancellableContext ctx = Context.current().withCancellation();
        AtomicBoolean sawTokens = new AtomicBoolean();
        ctx.run(() -> {
            Iterator<GenerateChunk> it = InferenceGrpc.newBlockingStub(channel).generateStream(greedy(p, 100_000));
            for (int i = 0; i < 3 && it.hasNext(); i++) sawTokens.set(it.next().getTokenIdsCount() > 0);
        });
        assertTrue(sawTokens.get());
        ctx.cancel(null);
        awaitNoLiveSequences();
    }

    @Test @Order(6)
    void deadlinePassedEndsTheRequestAndFreesState() throws Exception {
        int[] p = prompt(6, 30);
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                () -> client.withDeadlineAfter(1500, TimeUnit.MILLISECONDS).generate(greedy(p, 100_000)));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
        awaitNoLiveSequences();
    }

    @Test @Order(7)
    void prefillWorkerKilledAfterTakingARequestLosesNothing() {
        AtomicBoolean crashed = new AtomicBoolean();
        for (PrefillWorker w : mesh.prefillers()) {
            w.setHook(t -> {
                if (crashed.compareAndSet(false, true)) throw new PrefillWorker.Crash("killed after taking " + t.getSpec().getRequestId());
            });
        }
        int[] p = prompt(7, 25);
        GenerateResponse r = client.withDeadlineAfter(120, TimeUnit.SECONDS).generate(greedy(p, 10));
        assertTrue(crashed.get(), "a prefill worker took the request and died");
        assertEquals(inProcess(p, 10), r.getTokenIdsList());
    }

    @Test @Order(8)
    void decodeWorkerKilledMidGenerationIsResumedElsewhere() throws Exception {
        int[] p = prompt(8, 33);
        int maxNew = 400;
        Iterator<GenerateChunk> it = InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(120, TimeUnit.SECONDS).generateStream(greedy(p, maxNew));
        List<Integer> tokens = new ArrayList<>();
        GenerateChunk last = null;
        boolean killed = false;
        while (it.hasNext()) {
            last = it.next();
            tokens.addAll(last.getTokenIdsList());
            if (!killed && tokens.size() >= 5) {
                killed = true;
                for (int i = 0; i < mesh.decoders().size(); i++) {
                    if (mesh.decoders().get(i).worker().liveSequences() > 0) mesh.killDecode(i);
                }
            }
        }
        assertTrue(killed);
        assertEquals(1, last.getStats().getResumes(), "resumed once");
        assertEquals(inProcess(p, maxNew), tokens);
    }
}
