package io.lightmesh.mesh;

import io.lightmesh.proto.v1.ControllerHeartbeat;
import io.lightmesh.proto.v1.ControllerSeen;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * The placement controllers an expert shard has heard from: each controller's Describe carries its heartbeat
 * (worker.proto DescribeRequest.controller), the shard reports them back with their age (ExpertShardInfo.controllers),
 * and a controller that finds another live one there knows a second controller manages its shards. A controller is
 * live while its last heartbeat is at most {@link #staleAfterMs} old; the shard forgets it after {@link #forgetAfterMs}
 * and keeps at most {@link #MAX} (the oldest go first), so a stream of restarted routers cannot grow it.
 */
public final class ControllerSightings {
    public static final int MAX = 16;

    /** How old a controller's heartbeat may be while it counts as running: three of its polls missed, plus 2 s. */
    public static long staleAfterMs(long intervalMs) { return 3 * intervalMs + 2000; }

    /** How long a shard remembers a controller after its last heartbeat. */
    public static long forgetAfterMs(long intervalMs) { return Math.max(60_000, 10 * intervalMs); }

    /** Whether the controller of {@code s} was running as of the report. */
    public static boolean live(ControllerSeen s) { return s.getAgeMs() <= staleAfterMs(s.getIntervalMs()); }

    /**
     * Whether controller {@code a} started after {@code b} (ties, to the ms, to the greater id): of two live
     * controllers over the same shards the later one manages them (a router's rolling update starts the new one before
     * the old one stops) and the earlier stands by.
     */
    public static boolean later(long aStartedUnixMs, String aId, long bStartedUnixMs, String bId) {
        return aStartedUnixMs != bStartedUnixMs ? aStartedUnixMs > bStartedUnixMs : aId.compareTo(bId) > 0;
    }

    private record Sighting(long intervalMs, long startedUnixMs, long publishedVersion, long atMs) {}

    private final LongSupplier clockMs;
    private final Map<String, Sighting> seen = new HashMap<>();

    public ControllerSightings() { this(() -> System.nanoTime() / 1_000_000); }

    /** @param clockMs a monotonic clock in ms (tests drive their own) */
    public ControllerSightings(LongSupplier clockMs) { this.clockMs = clockMs; }

    /** Records a heartbeat; one without an id is ignored, an interval out of [10 ms, 10 min] is clamped. */
    public synchronized void heard(ControllerHeartbeat h) {
        if (h.getControllerId().isEmpty()) return;
        long interval = Math.clamp(h.getIntervalMs(), 10, 600_000);
        seen.put(h.getControllerId(), new Sighting(interval, h.getStartedUnixMs(), h.getPublishedVersion(), clockMs.getAsLong()));
        if (seen.size() > MAX) {
            seen.entrySet().stream().min(Comparator.comparingLong(e -> e.getValue().atMs())).map(Map.Entry::getKey).ifPresent(seen::remove);
        }
    }

    /** The controllers remembered now, newest heartbeat first. */
    public synchronized List<ControllerSeen> report() {
        long now = clockMs.getAsLong();
        seen.values().removeIf(s -> now - s.atMs() > forgetAfterMs(s.intervalMs()));
        List<ControllerSeen> out = new ArrayList<>();
        for (Map.Entry<String, Sighting> e : seen.entrySet()) {
            out.add(ControllerSeen.newBuilder().setControllerId(e.getKey()).setIntervalMs(e.getValue().intervalMs())
                    .setAgeMs(now - e.getValue().atMs()).setStartedUnixMs(e.getValue().startedUnixMs())
                    .setPublishedVersion(e.getValue().publishedVersion()).build());
        }
        out.sort(Comparator.comparingLong(ControllerSeen::getAgeMs));
        return out;
    }
}
