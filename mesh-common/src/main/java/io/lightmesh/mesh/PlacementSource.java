package io.lightmesh.mesh;

/**
 * Where a prefill or decode worker gets the newest expert placement, and where it reports shards it could not
 * reach. {@link RemoteExperts} reads {@link #current()} once per expert call (a step boundary), so a new placement
 * takes effect at the next call.
 *
 * <p>Two kinds: a fixed map ({@link #fixed}: discovered from the shards, no controller; failover only among the
 * replicas it lists) and a placement controller's stream ({@link PlacementClient}: Placement.Watch, reports go to
 * Placement.ReportUnreachable). {@link LivePlacement} is a map published in-process.
 */
public interface PlacementSource extends AutoCloseable {

    /** The newest placement this source has; null while it has none yet (a controller not yet heard from). */
    ExpertPlacement current();

    /**
     * Waits up to {@code timeoutMs} for a placement whose version is above {@code version}, and answers the newest
     * then (possibly not newer, or null, when none came). A source that cannot change answers at once.
     */
    ExpertPlacement awaitNewer(long version, long timeoutMs) throws InterruptedException;

    /** Whether newer placements can come; false for a fixed map. */
    boolean dynamic();

    /**
     * A worker could not reach {@code shard} (it stopped using it at once). Forwarded to the controller when there
     * is one, asynchronously: never blocks the caller.
     *
     * @param placementVersion the version the worker routed by
     */
    void reportUnreachable(ExpertPlacement.Shard shard, String reason, long placementVersion);

    @Override
    default void close() {}

    /** A fixed map: never changes; reports are logged. */
    static PlacementSource fixed(ExpertPlacement placement) {
        java.util.Objects.requireNonNull(placement);
        return new PlacementSource() {
            private final java.util.logging.Logger log = java.util.logging.Logger.getLogger(PlacementSource.class.getName());

            @Override public ExpertPlacement current() { return placement; }
            @Override public ExpertPlacement awaitNewer(long version, long timeoutMs) { return placement; }
            @Override public boolean dynamic() { return false; }
            @Override public void reportUnreachable(ExpertPlacement.Shard shard, String reason, long v) {
                log.warning("expert shard " + shard + " unreachable (" + reason + "); no placement controller: its replicas take its rows");
            }
            @Override public String toString() { return "fixed " + placement; }
        };
    }
}
