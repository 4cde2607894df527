package io.lightmesh.mesh;

import io.grpc.ManagedChannel;
import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.PlacementGrpc;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.UnreachableAck;
import io.lightmesh.proto.v1.UnreachableReport;
import io.lightmesh.proto.v1.WatchPlacementRequest;

import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * The placement as a controller publishes it: one Placement.Watch stream to the controller, kept open (reopened
 * after a failure with exponential backoff and jitter, from {@code backoffInitialMs} up to {@code backoffMaxMs}),
 * each map taken when its version is above the newest held. The last map stays in use while the controller is
 * unreachable. Reports of unreachable shards are sent to Placement.ReportUnreachable without waiting for the answer.
 * A misconfiguration that waiting cannot mend (the router named runs no controller: FAILED_PRECONDITION or
 * UNIMPLEMENTED; maps of another model's shape) is logged at SEVERE and ends {@link #awaitFirst} at once with it.
 */
public final class PlacementClient implements PlacementSource {
    private static final Logger LOG = Logger.getLogger(PlacementClient.class.getName());

    /**
     * @param target      the controller's gRPC address (the router's)
     * @param watcherId   this worker, for the controller's logs
     * @param numLayers   the model's layers and experts: maps of another shape are refused (logged, not taken)
     */
    public record Settings(String target, String watcherId, int numLayers, int numExperts, long backoffInitialMs, long backoffMaxMs) {
        public Settings(String target, String watcherId, int numLayers, int numExperts) {
            this(target, watcherId, numLayers, numExperts, 200, 5_000);
        }
    }

    private final Settings settings;
    private final ManagedChannel channel;
    private final LivePlacement live;
    private final ScheduledExecutorService timer;
    private long backoffMs; // guarded by this
    private io.grpc.Context.CancellableContext watch; // guarded by this
    private volatile boolean closed;
    private volatile String lastProblem = "not connected yet";
    private volatile String misconfigured; // set while the controller's answers say the mesh is misconfigured

    private PlacementClient(Settings settings) {
        this.settings = settings;
        this.channel = Grpc.channel(settings.target());
        this.live = new LivePlacement(null, this::send);
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "placement-watch-" + settings.watcherId());
            t.setDaemon(true);
            return t;
        });
        this.backoffMs = settings.backoffInitialMs();
    }

    /** Opens the watch (answers at once; {@link #awaitFirst} waits for the first map). */
    public static PlacementClient start(Settings settings) {
        PlacementClient c = new PlacementClient(settings);
        c.timer.execute(c::open);
        return c;
    }

    /**
     * The first complete placement (every pair held), waited for up to {@code timeoutMs}.
     *
     * @throws IllegalStateException when none came in time, with the last problem seen
     */
    public ExpertPlacement awaitFirst(long timeoutMs) throws InterruptedException {
        long until = System.currentTimeMillis() + timeoutMs;
        long version = -1;
        while (true) {
            // in short steps: a misconfiguration seen meanwhile ends the wait at once
            ExpertPlacement p = live.awaitNewer(version, Math.max(0, Math.min(200, until - System.currentTimeMillis())));
            if (p != null && p.missing().isEmpty()) return p;
            String wrong = misconfigured;
            if (wrong != null) throw new IllegalStateException("expert placement: " + wrong);
            if (p != null) version = p.version();
            if (System.currentTimeMillis() >= until) {
                throw new IllegalStateException("no complete expert placement from the controller at " + settings.target() + " within "
                        + timeoutMs + " ms: " + (p == null ? lastProblem : p.missing().size() + " (layer/expert) pairs held by no shard, e.g. " + p.missing().get(0)));
            }
        }
    }

    private void open() {
        if (closed) return;
        io.grpc.Context.CancellableContext ctx = io.grpc.Context.current().withCancellation();
        synchronized (this) {
            if (closed) { ctx.cancel(null); return; }
            watch = ctx;
        }
        WatchPlacementRequest req = WatchPlacementRequest.newBuilder().setWatcherId(settings.watcherId())
                .setKnownVersion(live.current() == null ? 0 : live.current().version()).build();
        ctx.run(() -> PlacementGrpc.newStub(channel).watch(req, new StreamObserver<>() {
            @Override public void onNext(PlacementMap m) { take(m); }
            @Override public void onError(Throwable t) {
                io.grpc.Status st = io.grpc.Status.fromThrowable(t);
                if (st.getCode() == io.grpc.Status.Code.FAILED_PRECONDITION || st.getCode() == io.grpc.Status.Code.UNIMPLEMENTED) {
                    misconfigure("lightmesh.placement names " + settings.target() + ", which serves no placement controller ("
                            + st.getCode() + (st.getDescription() == null ? "" : ": " + st.getDescription()) + ")");
                }
                reconnect(st.toString());
            }
            @Override public void onCompleted() { reconnect("the controller ended the watch"); }
        }));
    }

    /** Logs a misconfiguration at SEVERE (once while it lasts) and makes {@link #awaitFirst} fail with it. */
    private void misconfigure(String why) {
        if (!why.equals(misconfigured)) LOG.severe(settings.watcherId() + ": " + why);
        misconfigured = why;
        lastProblem = why;
    }

    private void take(PlacementMap m) {
        synchronized (this) { backoffMs = settings.backoffInitialMs(); }
        if (m.getNumLayers() != settings.numLayers() || m.getNumExperts() != settings.numExperts()) {
            misconfigure("the controller at " + settings.target() + " places a model of " + m.getNumLayers() + " layers x " + m.getNumExperts()
                    + " experts; this worker's has " + settings.numLayers() + " x " + settings.numExperts() + " (another model?); map not taken");
            return;
        }
        misconfigured = null;
        try {
            ExpertPlacement p = ExpertPlacement.fromProto(m);
            if (live.publish(p)) LOG.fine(settings.watcherId() + ": placement version " + p.version());
        } catch (IllegalArgumentException e) {
            lastProblem = "malformed placement from the controller: " + e.getMessage();
            LOG.warning(lastProblem);
        }
    }

    private void reconnect(String why) {
        if (closed) return;
        lastProblem = "placement watch on " + settings.target() + ": " + why;
        long delay;
        synchronized (this) {
            delay = backoffMs + ThreadLocalRandom.current().nextLong(backoffMs / 2 + 1);
            backoffMs = Math.min(settings.backoffMaxMs(), backoffMs * 2);
        }
        LOG.fine(lastProblem + "; reopening in " + delay + " ms");
        try {
            timer.schedule(this::open, delay, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.RejectedExecutionException closing) {
            // closed meanwhile
        }
    }

    private void send(LivePlacement.Report r) {
        if (closed) return;
        UnreachableReport req = UnreachableReport.newBuilder().setShardId(r.shard().id()).setAddress(r.shard().address())
                .setReason(r.reason()).setReporterId(settings.watcherId()).setPlacementVersion(r.placementVersion()).build();
        PlacementGrpc.newStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS).reportUnreachable(req, new StreamObserver<>() {
            @Override public void onNext(UnreachableAck a) {}
            @Override public void onError(Throwable t) { LOG.info("report of " + r.shard() + " to the controller failed: " + io.grpc.Status.fromThrowable(t)); }
            @Override public void onCompleted() {}
        });
    }

    @Override public ExpertPlacement current() { return live.current(); }

    @Override public ExpertPlacement awaitNewer(long version, long timeoutMs) throws InterruptedException { return live.awaitNewer(version, timeoutMs); }

    @Override public boolean dynamic() { return true; }

    @Override public void reportUnreachable(ExpertPlacement.Shard shard, String reason, long placementVersion) {
        live.reportUnreachable(shard, reason, placementVersion);
    }

    /** The misconfiguration the controller's last answer showed; null when none. */
    public String misconfigured() { return misconfigured; }

    /** The last problem with the watch, for logs and health. */
    public String lastProblem() { return lastProblem; }

    @Override
    public void close() {
        closed = true;
        synchronized (this) { if (watch != null) watch.cancel(null); }
        timer.shutdownNow();
        Grpc.shutdown(channel);
    }
}
