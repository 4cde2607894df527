package io.lightmesh.mesh;

import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Logger;

/**
 * The placement of expert shards found by discovery, for a worker without a placement controller: the shards of a
 * {@link PeerSet} ({@code dns:name:port} entries: the ready pods behind a headless Service) asked what they hold
 * (Worker.Describe) whenever the set changes, every {@code recheckMs}, and at once when a worker reports a shard
 * unreachable. Each time the shards that answered hold every (layer, expert) pair and differ from the published
 * placement, a new version is published ({@link LivePlacement}); {@link RemoteExperts} routes by it from its next
 * call, and a call that lost a shard waits (bounded) for it. An incomplete answer (a shard gone whose pairs no other
 * holds, a replacement not ready yet) keeps the last complete placement.
 *
 * <p>Each shard keeps what its {@code lightmesh.shard} says; this only follows which shards exist. With a placement
 * controller in the router (workers' {@code lightmesh.placement}), the controller follows the same discovered set
 * and this is not used.
 */
public final class DiscoveredPlacement implements PlacementSource {
    private static final Logger LOG = Logger.getLogger(DiscoveredPlacement.class.getName());
    /** How often the shards are asked again without a change of the set (a shard restarted at the same address). */
    public static final long DEFAULT_RECHECK_MS = 5_000;

    private final MeshModel model;
    private final PeerSet shards;
    private final String workerId;
    private final LivePlacement live = new LivePlacement(null, r -> { });
    private final ScheduledExecutorService describer;
    private final AtomicBoolean queued = new AtomicBoolean();
    private volatile boolean closed;
    private String lastProblem; // on the discovery thread: logged once until it changes

    private DiscoveredPlacement(MeshModel model, PeerSet shards, String workerId) {
        this.model = model;
        this.shards = shards;
        this.workerId = workerId;
        this.describer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "expert-discovery-" + workerId);
            t.setDaemon(true);
            return t;
        });
    }

    /**
     * Waits up to {@code waitMs} for a complete placement of the shards {@code shards} lists (this takes and closes
     * the set), then follows it.
     *
     * @throws IllegalStateException when none is complete in time, naming what is missing
     */
    public static DiscoveredPlacement start(MeshModel model, PeerSet shards, String workerId, long waitMs) throws InterruptedException {
        return start(model, shards, workerId, waitMs, DEFAULT_RECHECK_MS);
    }

    public static DiscoveredPlacement start(MeshModel model, PeerSet shards, String workerId, long waitMs, long recheckMs)
            throws InterruptedException {
        DiscoveredPlacement d = new DiscoveredPlacement(model, shards, workerId);
        try {
            long until = System.currentTimeMillis() + waitMs;
            while (true) {
                Services.Described found = Services.describeShards(model, shards.refresh());
                String missing = found.missing();
                if (missing == null) {
                    d.live.publish(found.placement().withVersion(1));
                    break;
                }
                if (System.currentTimeMillis() > until) {
                    throw new IllegalStateException("expert placement incomplete after " + waitMs + " ms of discovery over "
                            + shards.describe() + ": " + missing);
                }
                LOG.info(workerId + ": waiting for expert shards " + shards.describe() + ": " + missing);
                Thread.sleep(1000);
            }
        } catch (InterruptedException | RuntimeException e) {
            d.close();
            throw e;
        }
        LOG.info(workerId + ": expert shards discovered over " + shards.describe() + ": " + addresses(d.live.current()));
        shards.onChange(list -> d.recheck());
        d.describer.scheduleWithFixedDelay(d::recheck, recheckMs, recheckMs, TimeUnit.MILLISECONDS);
        return d;
    }

    /** Asks the shards again on the discovery thread (once, however often asked before it runs). */
    public void recheck() {
        if (closed || !queued.compareAndSet(false, true)) return;
        try {
            describer.execute(() -> {
                queued.set(false);
                describeNow();
            });
        } catch (java.util.concurrent.RejectedExecutionException stopped) {
            queued.set(false);
        }
    }

    private void describeNow() {
        if (closed) return;
        try {
            Services.Described found = Services.describeShards(model, shards.get());
            ExpertPlacement now = live.current();
            String missing = found.missing();
            if (missing != null) {
                if (!missing.equals(lastProblem)) LOG.info(workerId + ": expert placement kept at version " + now.version() + ": " + missing);
                lastProblem = missing;
                return;
            }
            lastProblem = null;
            if (same(found.placement(), now)) return;
            ExpertPlacement next = found.placement().withVersion(now.version() + 1);
            live.publish(next);
            LOG.info(workerId + ": expert placement version " + next.version() + " on " + addresses(next) + " (was " + addresses(now) + ")");
        } catch (RuntimeException e) { // a shard of another model, for one: keep what works
            LOG.warning(workerId + ": expert discovery: " + e.getMessage());
        }
    }

    /** The same shards holding the same pairs at the same addresses (versions aside). */
    private static boolean same(ExpertPlacement a, ExpertPlacement b) { return a.shards().equals(b.shards()); }

    private static List<String> addresses(ExpertPlacement p) {
        return p.shards().stream().map(s -> s.id() + "@" + s.address()).toList();
    }

    @Override
    public ExpertPlacement current() { return live.current(); }

    @Override
    public ExpertPlacement awaitNewer(long version, long timeoutMs) throws InterruptedException {
        return live.awaitNewer(version, timeoutMs);
    }

    /** True: discovery may publish a newer placement (so a call that lost its last replica waits for one). */
    @Override
    public boolean dynamic() { return true; }

    /** Resolves the names again and asks the shards at once: a replacement may be listed already. */
    @Override
    public void reportUnreachable(ExpertPlacement.Shard shard, String reason, long placementVersion) {
        LOG.info(workerId + ": expert shard " + shard + " unreachable (" + reason + "); asking the discovered shards again");
        if (closed || !queued.compareAndSet(false, true)) return;
        try {
            describer.execute(() -> {
                queued.set(false);
                shards.refresh();
                describeNow();
            });
        } catch (java.util.concurrent.RejectedExecutionException stopped) {
            queued.set(false);
        }
    }

    @Override
    public void close() {
        closed = true;
        describer.shutdownNow();
        shards.close();
    }

    @Override
    public String toString() { return "expert shards discovered over " + shards.describe(); }
}
