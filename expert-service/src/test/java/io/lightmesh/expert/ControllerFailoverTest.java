package io.lightmesh.expert;

import io.grpc.BindableService;
import io.grpc.Server;
import io.grpc.stub.StreamObserver;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.PlacementClient;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.proto.v1.LayerExperts;
import io.lightmesh.proto.v1.LoadExpertsRequest;
import io.lightmesh.proto.v1.PlacementGrpc;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.UnreachableAck;
import io.lightmesh.proto.v1.UnreachableReport;
import io.lightmesh.proto.v1.WatchPlacementRequest;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The data plane's side of a placement controller, end to end over real gRPC: workers' RemoteExperts follow a
 * Placement.Watch stream (PlacementClient); when the only holder of some experts dies, the worker reports it
 * (ReportUnreachable), the controller loads those experts onto a survivor (Expert.LoadExperts) and publishes a new
 * version, and the call in flight completes on it with the same bits. The controller here is the least that does
 * that; the real one (EPLB, in the router) is built on the same contract.
 */
class ControllerFailoverTest {
    @TempDir static Path dir;
    static TinyModel m;

    @BeforeAll
    static void load() throws Exception { m = new TinyModel(dir.resolve("model")); }

    @AfterAll
    static void close() { if (m != null) m.model.close(); }

    /** Publishes a map; on a report, moves the dead shard's experts onto the survivor and publishes the next version. */
    static final class MinimalController extends PlacementGrpc.PlacementImplBase {
        volatile PlacementMap newest;
        final List<StreamObserver<PlacementMap>> watchers = new CopyOnWriteArrayList<>();
        final List<UnreachableReport> reports = new CopyOnWriteArrayList<>();
        final ExpertShard survivor;

        MinimalController(PlacementMap first, ExpertShard survivor) { newest = first; this.survivor = survivor; }

        @Override public void watch(WatchPlacementRequest req, StreamObserver<PlacementMap> out) {
            out.onNext(newest);
            watchers.add(out);
        }

        @Override public synchronized void reportUnreachable(UnreachableReport r, StreamObserver<UnreachableAck> out) {
            reports.add(r);
            out.onNext(UnreachableAck.newBuilder().setPlacementVersion(newest.getVersion()).build());
            out.onCompleted();
            if (newest.getShardsList().stream().noneMatch(s -> s.getShardId().equals(r.getShardId()))) return;
            long next = newest.getVersion() + 1;
            // load first, over the shard's own gRPC, then publish a map without the dead shard
            var ch = Grpc.channel(survivor.address());
            try {
                LoadExpertsRequest.Builder load = LoadExpertsRequest.newBuilder().setPlacementVersion(next);
                for (int l = 0; l < m.L; l++) load.addExperts(LayerExperts.newBuilder().setLayer(l).addExperts(1).addExperts(3));
                io.lightmesh.proto.v1.ExpertGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS).loadExperts(load.build());
            } finally {
                Grpc.shutdown(ch);
            }
            newest = new ExpertPlacement(m.L, m.E, List.of(survivor.placementShard()), next).toProto();
            for (StreamObserver<PlacementMap> w : watchers) w.onNext(newest);
        }
    }

    static int freePort() throws Exception {
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) { return s.getLocalPort(); }
    }

    @Test
    void theLastHolderDiesAndTheCallCompletesOnTheControllersNextPlacement() throws Exception {
        Map<Integer, int[]> even = new java.util.HashMap<>(), odd = new java.util.HashMap<>();
        for (int l = 0; l < m.L; l++) { even.put(l, new int[] {0, 2}); odd.put(l, new int[] {1, 3}); }
        int px = freePort(), py = freePort();
        ExpertShard x = new ExpertShard(ExpertPlacement.Shard.of("X", "127.0.0.1:" + px, even), m.model, OpenTelemetry.noop(), 100);
        ExpertShard y = new ExpertShard(ExpertPlacement.Shard.of("Y", "127.0.0.1:" + py, odd), m.model, OpenTelemetry.noop(), 100);
        Server sx = Grpc.serve("127.0.0.1", px, x.services(), true), sy = Grpc.serve("127.0.0.1", py, y.services(), true);
        MinimalController controller = new MinimalController(new ExpertPlacement(m.L, m.E, List.of(x.placementShard(), y.placementShard()), 1).toProto(), x);
        Server sc = Grpc.serve("127.0.0.1", 0, List.<BindableService>of(controller));
        PlacementClient client = PlacementClient.start(new PlacementClient.Settings("127.0.0.1:" + sc.getPort(), "decode-0", m.L, m.E));
        try (RemoteExperts r = new RemoteExperts(client, m.h, new RemoteExperts.Settings(10_000, 8_000, 5_000, "decode-0"), true, new int[] {m.L, m.E})) {
            assertEquals(1, client.awaitFirst(10_000).version());
            TinyModel.Call c = m.call(21, 6, 24);
            float[] want = m.inProcess(c);
            float[] out = new float[c.n() * m.h];
            r.run(c.layer(), c.x(), c.n(), m.k, c.experts(), c.weights(), out);
            assertArrayEquals(want, out);
            sy.shutdownNow();
            long t0 = System.nanoTime();
            r.run(c.layer(), c.x(), c.n(), m.k, c.experts(), c.weights(), out);
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertArrayEquals(want, out, "the same bits, computed on the survivor");
            assertTrue(ms < 8_000, "completed on the new placement, not at the wait's bound: " + ms + " ms");
            assertEquals("Y", controller.reports.get(0).getShardId());
            assertEquals("decode-0", controller.reports.get(0).getReporterId());
            assertEquals(2, r.placement().version());
            assertEquals(m.L * m.E, x.slotsUsed());
            assertEquals(2, x.info().getPlacementVersion());
        } finally {
            sc.shutdownNow();
            sx.shutdownNow();
            x.close();
            y.close();
        }
    }
}
