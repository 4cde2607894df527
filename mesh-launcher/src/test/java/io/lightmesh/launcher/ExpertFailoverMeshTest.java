package io.lightmesh.launcher;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Expert shard failover in the mesh (real Kafka broker, real gRPC over loopback): two shards that both hold every
 * expert, no placement controller. Killing one under concurrent load loses no request and changes no token; killing
 * the last makes requests fail with UNAVAILABLE quickly, whether they are decoding or not yet prefilled.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ExpertFailoverMeshTest {
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    @RegisterExtension static final TestMesh running = new TestMesh();
    static EmbeddedMesh mesh;
    static InferenceGrpc.InferenceBlockingStub client;

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        SyntheticCheckpoint.Shape shape = SyntheticCheckpoint.Shape.tiny();
        SyntheticCheckpoint.write(model, shape, DType.F32, 23, false);
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, -1, kafka.bootstrapServers(), dir, 2, 1, 1,
                1L << 30, 32, "lightmesh.requests.v1", 64, 32);
        mesh = running.ready(EmbeddedMesh.start(o, s -> OpenTelemetry.noop(), EmbeddedMesh.ShardSetup.replicated(shape.layers(), shape.experts())));
        client = InferenceGrpc.newBlockingStub(running.channel());
    }

    static int[] prompt(long seed, int len) { return GreedyCases.prompt(seed, len); }

    static GenerateRequest greedy(int[] prompt, int maxNew) { return GreedyCases.greedy(prompt, maxNew); }

    static List<Integer> inProcess(int[] prompt, int maxNew) {
        return GreedyCases.engine(mesh.model().model(), mesh.model().tokenizer(), prompt, maxNew);
    }

    static long failedBatches() { return mesh.remoteExperts().stream().mapToLong(RemoteExperts::failedBatches).sum(); }

    @Test @Order(1)
    void killingOneOfTwoReplicatedShardsUnderLoadLosesNothing() throws Exception {
        int requests = 8, maxNew = 40;
        ExecutorService pool = Executors.newFixedThreadPool(requests);
        List<Future<GenerateResponse>> answers = new ArrayList<>();
        List<int[]> prompts = new ArrayList<>();
        for (int i = 0; i < requests; i++) {
            int[] p = prompt(100 + i, 20 + i);
            prompts.add(p);
            answers.add(pool.submit(() -> client.withDeadlineAfter(120, TimeUnit.SECONDS).generate(greedy(p, maxNew))));
        }
        // both replicas serve; then one dies mid-run
        long until = System.currentTimeMillis() + 60_000;
        while (System.currentTimeMillis() < until && (mesh.experts().get(0).worker().info().getTokensComputed() < 500
                || mesh.experts().get(1).worker().info().getTokensComputed() < 500)) Thread.sleep(10);
        assertTrue(answers.stream().anyMatch(f -> !f.isDone()), "killed while requests were in flight");
        mesh.killExpert(0);
        for (int i = 0; i < requests; i++) {
            GenerateResponse r = answers.get(i).get(120, TimeUnit.SECONDS); // none failed
            assertEquals(inProcess(prompts.get(i), maxNew), r.getTokenIdsList(), "request " + i + " unchanged by the failover");
            assertEquals(0, r.getStats().getResumes(), "the expert failover is invisible to the router");
        }
        pool.shutdown();
        assertTrue(failedBatches() > 0, "batches in flight on the killed shard failed and were sent again");
        assertTrue(mesh.remoteExperts().stream().anyMatch(r -> r.avoidedShards().contains("expert-0")));
        // the survivor alone serves the next request
        int[] p = prompt(7, 30);
        assertEquals(inProcess(p, 12), client.withDeadlineAfter(60, TimeUnit.SECONDS).generate(greedy(p, 12)).getTokenIdsList());
    }

    @Test @Order(2)
    void killingTheLastShardFailsADecodingRequestWithUnavailableQuickly() throws Exception {
        Iterator<GenerateChunk> it = InferenceGrpc.newBlockingStub(running.channel()).withDeadlineAfter(120, TimeUnit.SECONDS)
                .generateStream(greedy(prompt(8, 25), 2_000));
        int tokens = 0;
        long killedAt = 0;
        StatusRuntimeException failure = null;
        try {
            while (it.hasNext()) {
                tokens += it.next().getTokenIdsCount();
                if (killedAt == 0 && tokens >= 5) {
                    mesh.killExpert(1);
                    killedAt = System.nanoTime();
                }
            }
        } catch (StatusRuntimeException e) {
            failure = e;
        }
        assertTrue(killedAt > 0, "decoding when the shard died");
        assertTrue(failure != null, "the request failed (" + tokens + " tokens) rather than finished");
        assertEquals(Status.Code.UNAVAILABLE, failure.getStatus().getCode(), failure.toString());
        long ms = (System.nanoTime() - killedAt) / 1_000_000;
        assertTrue(ms < 15_000, "failed " + ms + " ms after the kill, well within the 120 s deadline");
        assertTrue(failure.getStatus().getDescription().contains("expert"), "names the cause: " + failure.getStatus());
    }

    @Test @Order(3)
    void withNoShardLeftANewRequestFailsWithUnavailableQuickly() {
        long t0 = System.nanoTime();
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                () -> client.withDeadlineAfter(60, TimeUnit.SECONDS).generate(greedy(prompt(9, 20), 8)));
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.toString());
        assertTrue(ms < 15_000, "failed after " + ms + " ms, well within the 60 s deadline");
        assertTrue(e.getStatus().getDescription().contains("expert"), "names the cause: " + e.getStatus());
        assertFalse(e.getStatus().getDescription().isBlank());
    }
}
