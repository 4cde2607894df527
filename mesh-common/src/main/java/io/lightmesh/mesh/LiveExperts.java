package io.lightmesh.mesh;

import io.lightmesh.engine.model.ExpertExecutor;

import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * Remote experts that follow a {@link PeerSet} of expert shards: the placement is asked from the shards (Worker.Describe)
 * whenever the set changes, and calls switch to a new {@link RemoteExperts} once the shards that answered hold every
 * (layer, expert) pair. A call that fails on a lost shard is retried once on the newest complete placement (expert
 * calls are pure functions of their inputs), waiting for one up to {@code failoverWaitMs}: with a replica or a
 * replacement pod of the lost shard, no request sees the loss. Superseded executors are closed after the call
 * timeout, when no call can still be using them.
 *
 * <p>This is the static placement source fed by discovery: each shard still holds what its {@code lightmesh.shard}
 * says, and the first shard holding a pair serves it.
 */
public final class LiveExperts implements ExpertExecutor, AutoCloseable {
    private static final Logger LOG = Logger.getLogger(LiveExperts.class.getName());

    private final MeshModel model;
    private final PeerSet shards;
    private final long callTimeoutMs, failoverWaitMs;
    private final ExecutorService rebuilder = Executors.newSingleThreadExecutor(r -> daemon(r, "expert-placement"));
    private final ScheduledExecutorService retirer = Executors.newSingleThreadScheduledExecutor(r -> daemon(r, "expert-retire"));
    private volatile RemoteExperts current;
    private volatile boolean closed;

    /**
     * Waits up to {@code startWaitMs} for a complete placement (as {@link Services#discover}), then follows the set.
     */
    public LiveExperts(MeshModel model, PeerSet shards, long callTimeoutMs, long startWaitMs, long failoverWaitMs) throws InterruptedException {
        this.model = model;
        this.shards = shards;
        this.callTimeoutMs = callTimeoutMs;
        this.failoverWaitMs = failoverWaitMs;
        long until = System.currentTimeMillis() + startWaitMs;
        while (true) {
            Services.Described d = Services.describeShards(model, shards.refresh());
            if (d.placement() != null) {
                current = new RemoteExperts(d.placement(), model.config().hiddenSize(), callTimeoutMs);
                break;
            }
            if (System.currentTimeMillis() > until) throw new IllegalStateException("expert placement incomplete: " + d.problem());
            LOG.info("waiting for expert shards " + shards.describe() + ": " + d.problem());
            Thread.sleep(1000);
        }
        shards.onChange(list -> rebuilder.execute(() -> rebuild(null)));
    }

    private static Thread daemon(Runnable r, String name) {
        Thread t = new Thread(r, name);
        t.setDaemon(true);
        return t;
    }

    /** The placement calls use now. */
    public ExpertPlacement placement() { return current.placement(); }

    /** The executor calls use now (its statistics). */
    public RemoteExperts current() { return current; }

    /**
     * Asks the listed shards once; switches when their placement is complete and differs from the one in use (or, after
     * a failure, from {@code failed}'s). Returns whether calls now use another executor than {@code failed}.
     */
    private synchronized boolean rebuild(RemoteExperts failed) {
        if (closed) return false;
        if (failed != null && current != failed) return true; // another call switched already
        Services.Described d;
        try {
            d = Services.describeShards(model, shards.get());
        } catch (RuntimeException e) {
            LOG.warning("expert placement: " + e.getMessage());
            return false;
        }
        if (d.placement() == null) {
            LOG.info("expert placement unchanged: " + d.problem());
            return false;
        }
        if (addresses(d.placement()).equals(addresses(current.placement()))) return false;
        RemoteExperts old = current;
        current = new RemoteExperts(d.placement(), model.config().hiddenSize(), callTimeoutMs);
        LOG.info("expert placement now on " + addresses(d.placement()) + " (was " + addresses(old.placement()) + ")");
        retirer.schedule(old::close, callTimeoutMs + 1000, TimeUnit.MILLISECONDS);
        return true;
    }

    private static List<String> addresses(ExpertPlacement p) {
        return p.shards().stream().map(ExpertPlacement.Shard::address).toList();
    }

    @Override
    public void run(int layer, float[] x, int n, int k, int[] experts, float[] weights, float[] out) {
        RemoteExperts r = current;
        try {
            r.run(layer, x, n, k, experts, weights, out);
        } catch (IllegalStateException lost) {
            if (closed) throw lost;
            LOG.warning("expert call failed (" + lost.getMessage() + "); looking for the shards again");
            long until = System.currentTimeMillis() + failoverWaitMs;
            while (!rebuildAfter(r)) {
                if (System.currentTimeMillis() > until) throw lost;
                try {
                    Thread.sleep(250);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw lost;
                }
            }
            current.run(layer, x, n, k, experts, weights, out);
        }
    }

    private boolean rebuildAfter(RemoteExperts failed) {
        shards.refresh();
        return rebuild(failed);
    }

    @Override
    public void close() {
        closed = true;
        rebuilder.shutdownNow();
        retirer.shutdownNow();
        shards.close();
        RemoteExperts r = current;
        if (r != null) r.close();
    }
}
