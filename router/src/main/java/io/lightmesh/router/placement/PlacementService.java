package io.lightmesh.router.placement;

import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.PlacementGrpc;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.UnreachableAck;
import io.lightmesh.proto.v1.UnreachableReport;
import io.lightmesh.proto.v1.WatchPlacementRequest;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;
import java.util.logging.Logger;

/**
 * The Placement gRPC service: workers watch the newest placement (the current one at once, then every new version)
 * and report shards they could not reach. Publishing is non-blocking: each watcher's stream is written under its
 * own lock; a watcher that cannot take messages (cancelled, failed) is dropped.
 */
public final class PlacementService extends PlacementGrpc.PlacementImplBase {
    private static final Logger LOG = Logger.getLogger(PlacementService.class.getName());

    /** A watch stream and the newest version sent on it (guarded by the watcher). */
    private static final class Watcher {
        final ServerCallStreamObserver<PlacementMap> out;
        long sent = -1;
        Watcher(ServerCallStreamObserver<PlacementMap> out) { this.out = out; }
    }

    private final Set<Watcher> watchers = ConcurrentHashMap.newKeySet();
    private final Consumer<UnreachableReport> reports;
    private volatile PlacementMap current; // null until the first complete placement

    /** @param reports receives every ReportUnreachable (on the gRPC thread: hand it off, do not block) */
    public PlacementService(Consumer<UnreachableReport> reports) { this.reports = reports; }

    /** Sends {@code map} to every watcher; versions only grow (an older map is ignored). */
    public void publish(PlacementMap map) {
        synchronized (this) {
            if (current != null && map.getVersion() <= current.getVersion()) return;
            current = map;
        }
        for (Watcher w : watchers) send(w, map);
    }

    public PlacementMap current() { return current; }

    public int watchers() { return watchers.size(); }

    /** Sends map unless the watcher already has it or a newer one: versions only grow on one stream. */
    private void send(Watcher w, PlacementMap map) {
        synchronized (w) {
            if (w.out.isCancelled()) { watchers.remove(w); return; }
            if (map.getVersion() <= w.sent) return;
            try {
                w.out.onNext(map);
                w.sent = map.getVersion();
            } catch (RuntimeException e) {
                watchers.remove(w);
                LOG.fine("placement watcher dropped: " + e);
            }
        }
    }

    @Override
    public void watch(WatchPlacementRequest req, StreamObserver<PlacementMap> out) {
        Watcher w = new Watcher((ServerCallStreamObserver<PlacementMap>) out);
        w.out.setOnCancelHandler(() -> watchers.remove(w));
        watchers.add(w);
        PlacementMap now = current;
        if (now != null && now.getVersion() != req.getKnownVersion()) send(w, now);
    }

    @Override
    public void reportUnreachable(UnreachableReport r, StreamObserver<UnreachableAck> out) {
        if (r.getShardId().isEmpty() && r.getAddress().isEmpty()) {
            out.onError(Status.INVALID_ARGUMENT.withDescription("a report names the shard: shard_id or address").asRuntimeException());
            return;
        }
        PlacementMap now = current;
        reports.accept(r);
        out.onNext(UnreachableAck.newBuilder().setPlacementVersion(now == null ? 0 : now.getVersion()).build());
        out.onCompleted();
    }

    /** Ends every watch (the router is stopping): watchers reconnect elsewhere or keep their last map. */
    public void close() {
        for (Watcher w : watchers) {
            synchronized (w) {
                try { w.out.onError(Status.UNAVAILABLE.withDescription("placement controller stopping").asRuntimeException()); }
                catch (RuntimeException ignored) { }
            }
        }
        watchers.clear();
    }
}
