package io.lightmesh.mesh;

import java.util.function.Consumer;

/**
 * A placement published in-process, newest version wins: the state behind {@link PlacementClient} (which publishes
 * what the controller's Watch stream sends), and a source a test or an embedded controller can drive directly.
 * Thread-safe; {@link #awaitNewer} wakes on every publish.
 */
public final class LivePlacement implements PlacementSource {

    /** A worker's report that it could not reach a shard. */
    public record Report(ExpertPlacement.Shard shard, String reason, long placementVersion) {}

    private final Object lock = new Object();
    private ExpertPlacement newest; // guarded by lock
    private final Consumer<Report> reports;

    /** @param reports receives each {@link #reportUnreachable} (on the caller's thread: it must not block) */
    public LivePlacement(ExpertPlacement initial, Consumer<Report> reports) {
        this.newest = initial;
        this.reports = reports;
    }

    /**
     * Makes {@code p} the newest placement if its version is above the current one's (or none is held yet).
     *
     * @return whether it was taken
     */
    public boolean publish(ExpertPlacement p) {
        synchronized (lock) {
            if (newest != null && p.version() <= newest.version()) return false;
            newest = p;
            lock.notifyAll();
            return true;
        }
    }

    @Override
    public ExpertPlacement current() {
        synchronized (lock) { return newest; }
    }

    @Override
    public ExpertPlacement awaitNewer(long version, long timeoutMs) throws InterruptedException {
        long until = System.nanoTime() + Math.max(0, timeoutMs) * 1_000_000;
        synchronized (lock) {
            while (newest == null || newest.version() <= version) {
                long left = (until - System.nanoTime()) / 1_000_000;
                if (left <= 0) break;
                lock.wait(left);
            }
            return newest;
        }
    }

    @Override
    public boolean dynamic() { return true; }

    @Override
    public void reportUnreachable(ExpertPlacement.Shard shard, String reason, long placementVersion) {
        reports.accept(new Report(shard, reason, placementVersion));
    }
}
