package io.lightmesh.mesh;

import io.grpc.BindableService;
import io.grpc.Server;
import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.PlacementGrpc;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.UnreachableAck;
import io.lightmesh.proto.v1.UnreachableReport;
import io.lightmesh.proto.v1.WatchPlacementRequest;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** PlacementClient against a real gRPC server playing the controller's side of lightmesh.v1.Placement. */
class PlacementClientTest {

    /** The controller's side, as small as the contract allows: newest map first, then each publish. */
    static final class Controller extends PlacementGrpc.PlacementImplBase {
        volatile PlacementMap newest;
        final List<StreamObserver<PlacementMap>> watchers = new CopyOnWriteArrayList<>();
        final BlockingQueue<UnreachableReport> reports = new LinkedBlockingQueue<>();

        Controller(PlacementMap first) { newest = first; }

        @Override public void watch(WatchPlacementRequest req, StreamObserver<PlacementMap> out) {
            if (newest != null) out.onNext(newest);
            watchers.add(out);
        }

        @Override public void reportUnreachable(UnreachableReport r, StreamObserver<UnreachableAck> out) {
            reports.add(r);
            out.onNext(UnreachableAck.newBuilder().setPlacementVersion(newest.getVersion()).build());
            out.onCompleted();
        }

        void publish(PlacementMap m) {
            newest = m;
            for (StreamObserver<PlacementMap> w : watchers) w.onNext(m);
        }
    }

    static PlacementMap map(long version, String... addresses) {
        return ExpertPlacement.roundRobin(2, 4, List.of(addresses)).withVersion(version).toProto();
    }

    @Test
    void followsTheWatchReconnectsAndForwardsReports() throws Exception {
        Controller c = new Controller(map(1, "a:1"));
        Server server = Grpc.serve("127.0.0.1", 0, List.<BindableService>of(c));
        int port = server.getPort();
        try (PlacementClient client = PlacementClient.start(new PlacementClient.Settings("127.0.0.1:" + port, "decode-0", 2, 4, 50, 200))) {
            ExpertPlacement first = client.awaitFirst(10_000);
            assertEquals(1, first.version());
            assertTrue(client.dynamic());

            // a newer version wakes a waiter; an older one is not taken
            Thread t = new Thread(() -> { sleep(200); c.publish(map(3, "a:1", "b:2")); c.publish(map(2, "z:9")); });
            t.start();
            long t0 = System.nanoTime();
            ExpertPlacement p = client.awaitNewer(1, 10_000);
            assertTrue((System.nanoTime() - t0) / 1e6 < 5_000);
            assertEquals(3, p.version());
            assertEquals(2, p.shards().size());
            t.join();
            Thread.sleep(200);
            assertEquals(3, client.current().version(), "versions only grow");

            // a map of another model's shape is refused
            c.publish(ExpertPlacement.roundRobin(3, 4, List.of("q:1")).withVersion(9).toProto());
            Thread.sleep(200);
            assertEquals(3, client.current().version());

            // reports reach the controller
            client.reportUnreachable(p.shards().get(1), "UNAVAILABLE: io exception", 3);
            UnreachableReport r = c.reports.poll(10, TimeUnit.SECONDS);
            assertNotNull(r);
            assertEquals("expert-1", r.getShardId());
            assertEquals("b:2", r.getAddress());
            assertEquals("decode-0", r.getReporterId());
            assertEquals(3, r.getPlacementVersion());

            // the controller goes away: the last map stays; it comes back on the same port: the watch reopens
            server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
            Thread.sleep(300);
            assertEquals(3, client.current().version());
            Controller c2 = new Controller(map(5, "c:3"));
            server = Grpc.serve("127.0.0.1", port, List.<BindableService>of(c2));
            ExpertPlacement after = client.awaitNewer(3, 10_000);
            assertEquals(5, after.version(), "reconnected after the controller restarted: " + client.lastProblem());
        } finally {
            server.shutdownNow();
        }
    }

    @Test
    void noControllerMeansABoundedWaitWithTheCause() throws Exception {
        int port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) { port = s.getLocalPort(); }
        try (PlacementClient client = PlacementClient.start(new PlacementClient.Settings("127.0.0.1:" + port, "prefill-0", 2, 4, 50, 200))) {
            long t0 = System.nanoTime();
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> client.awaitFirst(3_000));
            assertTrue((System.nanoTime() - t0) / 1e6 < 8_000, "bounded");
            assertTrue(e.getMessage().contains("UNAVAILABLE"), "names the cause: " + e.getMessage());
            assertNull(client.current());
        }
    }

    @Test
    void aRouterThatRunsNoControllerEndsTheWaitAtOnceNamingIt() throws Exception {
        // the router's own answer when it runs no controller (RouterNode): Placement declined on its server
        DeferredServices services = new DeferredServices();
        services.decline(PlacementGrpc.SERVICE_NAME, io.grpc.Status.FAILED_PRECONDITION.withDescription("this router runs no expert placement controller: test"));
        services.markReady();
        Server server = Grpc.serve("127.0.0.1", 0, List.<BindableService>of(() -> services.bind(PlacementGrpc.getServiceDescriptor())));
        try (PlacementClient client = PlacementClient.start(new PlacementClient.Settings("127.0.0.1:" + server.getPort(), "decode-0", 2, 4, 50, 200))) {
            long t0 = System.nanoTime();
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> client.awaitFirst(60_000));
            assertTrue((System.nanoTime() - t0) / 1e6 < 10_000, "at once, not after the 60 s wait");
            assertTrue(e.getMessage().contains("serves no placement controller") && e.getMessage().contains("runs no expert placement controller: test"), e.getMessage());
            assertNotNull(client.misconfigured());
        } finally {
            server.shutdownNow();
        }
    }

    @Test
    void aControllerOfAnotherModelsShapeEndsTheWaitAtOnce() throws Exception {
        Controller c = new Controller(ExpertPlacement.roundRobin(3, 4, List.of("q:1")).withVersion(1).toProto());
        Server server = Grpc.serve("127.0.0.1", 0, List.<BindableService>of(c));
        try (PlacementClient client = PlacementClient.start(new PlacementClient.Settings("127.0.0.1:" + server.getPort(), "prefill-0", 2, 4, 50, 200))) {
            long t0 = System.nanoTime();
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> client.awaitFirst(60_000));
            assertTrue((System.nanoTime() - t0) / 1e6 < 10_000, "at once");
            assertTrue(e.getMessage().contains("3 layers x 4 experts") && e.getMessage().contains("2 x 4"), e.getMessage());
            assertNull(client.current());
        } finally {
            server.shutdownNow();
        }
    }

    @Test
    void livePlacementTakesOnlyNewerVersions() throws Exception {
        List<LivePlacement.Report> reports = new CopyOnWriteArrayList<>();
        LivePlacement live = new LivePlacement(ExpertPlacement.roundRobin(1, 2, List.of("a:1")).withVersion(4), reports::add);
        assertTrue(live.publish(ExpertPlacement.roundRobin(1, 2, List.of("b:1")).withVersion(5)));
        assertTrue(!live.publish(ExpertPlacement.roundRobin(1, 2, List.of("c:1")).withVersion(5)));
        long t0 = System.nanoTime();
        assertEquals(5, live.awaitNewer(5, 100).version(), "the newest when nothing newer came");
        assertTrue((System.nanoTime() - t0) / 1e6 >= 90, "waited the timeout");
        live.reportUnreachable(live.current().shards().get(0), "gone", 5);
        assertEquals(1, reports.size());
        PlacementSource fixed = PlacementSource.fixed(live.current());
        t0 = System.nanoTime();
        assertEquals(5, fixed.awaitNewer(5, 10_000).version());
        assertTrue((System.nanoTime() - t0) / 1e6 < 1_000, "a fixed map answers at once");
    }

    private static void sleep(long ms) {
        try { Thread.sleep(ms); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
    }
}
