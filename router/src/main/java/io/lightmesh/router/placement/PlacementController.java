package io.lightmesh.router.placement;

import io.grpc.BindableService;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.mesh.EplbPlanner;
import io.lightmesh.proto.v1.UnreachableReport;
import io.lightmesh.proto.v1.WorkerInfo;
import io.lightmesh.proto.v1.WorkerKind;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The placement controller of a mesh (in the router process): follows the expert load and keeps the expert pool
 * balanced and whole.
 *
 * <ul>
 *   <li><b>Measure</b>: every {@code pollMs} it asks each shard (Worker.Describe) for its cumulative per-(layer,
 *       expert) token counters and compute time; {@link LoadWindow} turns them into tokens/s over the sliding window.</li>
 *   <li><b>Rebalance</b>: when the imbalance of the published placement (max / mean of the shards' share of the
 *       window's load) stays above the threshold for a whole window, it plans anew ({@link EplbPlanner}) and applies
 *       the plan live: new copies are loaded first (Expert.LoadExperts), then the new version is published to
 *       watching workers (Placement.Watch), and after a grace period the copies no longer placed are unloaded
 *       (Expert.UnloadExperts, which itself waits for batches in flight). A worker still routing by the old version
 *       in between is refused in band for an unloaded pair and re-routes, so no call is lost.</li>
 *   <li><b>Failover</b>: a shard that refuses its Describe (UNAVAILABLE: nothing listens, the connection is reset, its
 *       keepalive is lost), or that a worker reports and that then refuses a probe, is dropped at once; one that answers
 *       late is slow, not dead ({@link Liveness}: its bound grows, and after three missed polls it is dropped only when
 *       every pair it holds has another answering holder); the (layer, expert) pairs it alone held are loaded onto the least-loaded survivors, beyond
 *       their planning slots if need be (correctness first: an emergency copy may exceed {@code --expert-slots}, never
 *       the shard's own capacity), and the new version is published. With no shard left the map is published
 *       without shards and workers' expert calls fail UNAVAILABLE.</li>
 *   <li><b>Scale</b>: the shards needed for the load ({@link ShardDemand}) are exported; with a {@link ShardPool}
 *       it starts a shard when more are needed (it joins the placement at the next poll) and drains and stops one
 *       when fewer are, each after the need held for a window.</li>
 * </ul>
 * All decisions run on one thread; shard calls fan out on virtual threads and every one has a deadline.
 */
public final class PlacementController implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(PlacementController.class.getName());

    /**
     * @param pollMs             how often shards are described
     * @param windowMs           the sliding window of loads, and how long an imbalance (or a scaling need) must last
     * @param imbalanceThreshold re-place when max / mean shard load stays above this
     * @param extraSlots         expert copies (one (layer, expert) each) a shard may hold for replicas beyond its share
     *                           (ceil(E / shards) per layer), spread evenly over the layers; -1: two per layer
     * @param drainGraceMs       between publishing a version and unloading the copies it dropped (stopping a drained shard)
     * @param rpcTimeoutMs       deadline of LoadExperts / UnloadExperts
     * @param demand             the shard count the load needs; its min/max bound a {@link ShardPool}
     * @param liveness           how long a shard's Describe may take, and when a shard that answers late is dropped
     */
    public record Settings(long pollMs, long windowMs, double imbalanceThreshold, int extraSlots, long drainGraceMs,
                           long rpcTimeoutMs, ShardDemand demand, Liveness liveness) {
        public Settings {
            if (pollMs < 10 || windowMs < pollMs) throw new IllegalArgumentException("need 10 ms <= poll <= window, got " + pollMs + " / " + windowMs);
            if (!(imbalanceThreshold >= 1)) throw new IllegalArgumentException("imbalance threshold must be >= 1, got " + imbalanceThreshold);
            if (extraSlots < -1) throw new IllegalArgumentException("expert slots must be >= 0, got " + extraSlots);
            if (liveness == null) throw new IllegalArgumentException("liveness settings missing");
        }

        /** With the default {@link Liveness}. */
        public Settings(long pollMs, long windowMs, double imbalanceThreshold, int extraSlots, long drainGraceMs,
                        long rpcTimeoutMs, ShardDemand demand) {
            this(pollMs, windowMs, imbalanceThreshold, extraSlots, drainGraceMs, rpcTimeoutMs, demand, Liveness.defaults());
        }

        /** Poll every second, 60 s window, threshold 1.25, 2 spare slots per layer, 10 s grace, 70% utilisation. */
        public static Settings defaults() {
            return new Settings(1000, 60_000, 1.25, -1, 10_000, 30_000, new ShardDemand(0.7, 1, Integer.MAX_VALUE), Liveness.defaults());
        }

        public Settings withWindow(long pollMs, long windowMs) {
            return new Settings(pollMs, windowMs, imbalanceThreshold, extraSlots, drainGraceMs, rpcTimeoutMs, demand, liveness);
        }

        public Settings withThreshold(double t) {
            return new Settings(pollMs, windowMs, t, extraSlots, drainGraceMs, rpcTimeoutMs, demand, liveness);
        }

        public Settings withExtraSlots(int k) {
            return new Settings(pollMs, windowMs, imbalanceThreshold, k, drainGraceMs, rpcTimeoutMs, demand, liveness);
        }

        public Settings withDrainGraceMs(long ms) {
            return new Settings(pollMs, windowMs, imbalanceThreshold, extraSlots, ms, rpcTimeoutMs, demand, liveness);
        }

        public Settings withDemand(ShardDemand d) {
            return new Settings(pollMs, windowMs, imbalanceThreshold, extraSlots, drainGraceMs, rpcTimeoutMs, d, liveness);
        }

        public Settings withLiveness(Liveness l) {
            return new Settings(pollMs, windowMs, imbalanceThreshold, extraSlots, drainGraceMs, rpcTimeoutMs, demand, l);
        }
    }

    /**
     * How the controller tells a slow shard from a dead one. A Describe refused by the transport (UNAVAILABLE:
     * connection refused or reset, keepalive lost) means the shard is gone: it is dropped at once and its experts
     * re-placed. A Describe that misses its bound (DEADLINE_EXCEEDED, or any other failure) means the shard is slow:
     * its bound doubles (up to {@code describeMaxMs}) and comes back down as it answers quickly again; after
     * {@code missesToDrop} misses in a row it is dropped, but only when every (layer, expert) pair it holds has
     * another holder that answers: slowness never leaves a pair without a shard.
     *
     * @param describeMs    the bound of a known shard's Describe while it answers in time (a first contact gets at least 5 s)
     * @param describeMaxMs the largest bound a slow shard's Describe is given
     * @param missesToDrop  polls in a row without an answer in time before a slow shard may be dropped
     */
    public record Liveness(long describeMs, long describeMaxMs, int missesToDrop) {
        public Liveness {
            if (describeMs < 100 || describeMaxMs < describeMs)
                throw new IllegalArgumentException("need 100 ms <= describe bound <= its maximum, got " + describeMs + " / " + describeMaxMs);
            if (missesToDrop < 1) throw new IllegalArgumentException("misses to drop must be >= 1, got " + missesToDrop);
        }

        /** 2 s, growing up to 10 s for a slow shard, dropped (when not the last answering holder) after 3 misses. */
        public static Liveness defaults() { return new Liveness(2000, 10_000, 3); }
    }

    /** Copies a shard holds but the published placement no longer lists, to unload once the grace has passed. */
    private record PendingUnload(String address, int[][] experts, long dueMs) {}

    private final Settings settings;
    private final int numLayers, numExperts;
    private final String fingerprint;
    private final Supplier<List<String>> configured;
    private final ShardPool pool;
    private final ShardClients clients;
    private final LoadWindow window;
    private final PlacementService service;
    private final PlacementMetrics metrics;
    private final ScheduledExecutorService loop;
    private final ExecutorService calls = Executors.newVirtualThreadPerTaskExecutor();

    // ---- owned by the loop thread ----
    private Layout layout; // the published placement; null until the first complete one
    private final Map<String, WorkerInfo> live = new LinkedHashMap<>(); // address -> last Describe, of shards answering
    private final Set<String> dropped = new HashSet<>(); // addresses failed over; they may rejoin when they answer again
    private final Set<String> started = new LinkedHashSet<>(); // addresses the pool started
    private final Set<String> retired = new HashSet<>(); // addresses drained for stopping: not polled, never rejoin
    private final List<PendingUnload> pending = new ArrayList<>();
    private final Map<String, Long> stops = new HashMap<>(); // drained address -> when to stop it
    private final Map<String, Integer> misses = new HashMap<>(); // address -> polls in a row without an answer in time
    private final Map<String, Long> bounds = new HashMap<>(); // address -> its Describe bound now (grows while it is slow)
    private final Set<String> foreign = new HashSet<>(); // addresses answering as another kind or model (logged once)
    private final Set<String> keptSlow = new HashSet<>(); // slow shards kept as a pair's last answering holder (logged once)
    private long aboveSinceMs = -1, lastChangeMs, scaleUpSinceMs = -1, scaleDownSinceMs = -1;
    private long maxVersionSeen;
    private long maxVersionIssued; // the newest version this controller sent a shard or published
    private double lastCapacity = Double.NaN; // tokens per compute-second of one shard, last measured

    private final List<java.util.function.Consumer<io.lightmesh.proto.v1.PlacementMap>> listeners = new java.util.concurrent.CopyOnWriteArrayList<>();
    private volatile PlacementView view = PlacementView.EMPTY;
    private volatile long rebalances, failovers, lastReplaceMs = -1;
    // ---- evidence of another controller over these shards (both written by the loop thread) ----
    private volatile String heartbeatConflict; // another live controller's heartbeat reported by a shard at the last poll
    private volatile String versionConflict; // a shard's placement version above any this controller issued
    private volatile long versionConflictMs; // when versionConflict was last renewed (a newer foreign version)
    private long foreignVersion; // the newest such version seen
    private boolean conflictLogged, olderLogged;
    private boolean othersLive; // another controller's heartbeat was live at the last poll
    /** How long the version evidence stands without a newer foreign version (a controller without heartbeats). */
    static final long VERSION_EVIDENCE_MS = 60_000;

    /** Unique per instance (a restarted router is a new controller): "pid@host#random", sent as its heartbeat. */
    private final String id = java.lang.management.ManagementFactory.getRuntimeMXBean().getName() + "#"
            + Long.toHexString(java.util.concurrent.ThreadLocalRandom.current().nextLong() & 0xffffffL);
    private final long startedUnixMs = System.currentTimeMillis();
    private long maxVersionOfOthers; // the newest version another controller's heartbeat said it published
    private volatile boolean standingBy; // a later controller manages these shards: this one changes nothing

    /**
     * @param fingerprint the model's fingerprint; shards of another model are ignored
     * @param addresses   the expert shards' gRPC addresses, asked at every poll (static flags, or discovery)
     * @param pool        starts and stops shards; null: the pool is scaled from outside (the metric only)
     */
    public PlacementController(Settings settings, int numLayers, int numExperts, String fingerprint,
                               Supplier<List<String>> addresses, ShardPool pool, io.opentelemetry.api.metrics.Meter meter) {
        this.settings = settings;
        this.numLayers = numLayers;
        this.numExperts = numExperts;
        this.fingerprint = fingerprint;
        this.configured = addresses;
        this.pool = pool;
        this.clients = new ShardClients(settings.rpcTimeoutMs());
        this.window = new LoadWindow(settings.windowMs(), numLayers, numExperts);
        this.service = new PlacementService(this::onReport);
        this.loop = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "lightmesh-placement");
            t.setDaemon(true);
            return t;
        });
        this.metrics = meter == null ? null : new PlacementMetrics(meter, this::view, numExperts);
        this.lastChangeMs = now();
    }

    /** What this controller's Describe calls carry: its heartbeat (worker.proto ControllerHeartbeat). */
    private io.lightmesh.proto.v1.DescribeRequest heartbeat() {
        return io.lightmesh.proto.v1.DescribeRequest.newBuilder().setController(io.lightmesh.proto.v1.ControllerHeartbeat.newBuilder()
                .setControllerId(id).setIntervalMs(settings.pollMs()).setStartedUnixMs(startedUnixMs)
                .setPublishedVersion(layout == null ? 0 : layout.version())).build();
    }

    /** This controller's identity, as its heartbeat carries it to the shards. */
    public String id() { return id; }

    /** Starts polling. */
    public PlacementController start() {
        loop.scheduleWithFixedDelay(this::tickSafely, 0, settings.pollMs(), TimeUnit.MILLISECONDS);
        return this;
    }

    /** The gRPC service workers watch (serve it on the router's server). */
    public BindableService service() { return service; }

    public PlacementService placementService() { return service; }

    /**
     * Also hands every published version to {@code listener} (on the controller's thread; it must not block): how
     * in-process workers follow the controller without a Watch stream. Gets the current version at once if there is one.
     */
    public void onPublish(java.util.function.Consumer<io.lightmesh.proto.v1.PlacementMap> listener) {
        listeners.add(listener);
        io.lightmesh.proto.v1.PlacementMap now = service.current();
        if (now != null) listener.accept(now);
    }

    /** A worker in this process could not reach a shard: as Placement.ReportUnreachable. Never blocks. */
    public void reportUnreachable(String shardId, String address, String reason, String reporter, long version) {
        onReport(UnreachableReport.newBuilder().setShardId(shardId).setAddress(address).setReason(reason)
                .setReporterId(reporter).setPlacementVersion(version).build());
    }

    /** The published placement and the window's loads, for GET /admin/placement. */
    public PlacementView view() { return view; }

    public long rebalances() { return rebalances; }
    public long failovers() { return failovers; }
    /** Milliseconds the last re-placement took from decision to published (loading the new copies); -1 before one. */
    public long lastReplaceMs() { return lastReplaceMs; }

    /** Runs one poll now, on the controller's thread, and waits for it (tests and benchmarks). */
    public void pollNow() throws Exception {
        loop.submit(this::tick).get(60, TimeUnit.SECONDS);
    }

    private static long now() { return System.nanoTime() / 1_000_000; }

    private void tickSafely() {
        try {
            tick();
        } catch (RuntimeException | Error e) {
            LOG.log(Level.WARNING, "placement controller: poll failed", e);
        }
    }

    // ---- the poll ----

    private void tick() {
        long now = now();
        Set<String> targets = new LinkedHashSet<>(configured.get());
        targets.addAll(started);
        targets.removeAll(retired);
        Map<String, Future<WorkerInfo>> asked = new LinkedHashMap<>();
        Map<String, Long> askedMs = new HashMap<>();
        Map<String, Long> tookMs = new java.util.concurrent.ConcurrentHashMap<>();
        long slowest = 0;
        io.lightmesh.proto.v1.DescribeRequest heartbeat = heartbeat();
        for (String t : targets) {
            // first contact (connection set-up, a cold JVM) gets longer than a known shard; a slow one its grown bound
            long ms = live.containsKey(t) ? boundOf(t) : Math.max(boundOf(t), 5000);
            askedMs.put(t, ms);
            slowest = Math.max(slowest, ms);
            asked.put(t, calls.submit(() -> {
                long start = now();
                WorkerInfo w = clients.describe(t, ms, heartbeat);
                tookMs.put(t, now() - start);
                return w;
            }));
        }
        long t0 = now();
        Map<String, WorkerInfo> answeredNow = new LinkedHashMap<>();
        for (Map.Entry<String, Future<WorkerInfo>> a : asked.entrySet()) {
            String address = a.getKey();
            try {
                // the calls run in parallel: each has had its own bound by the time the slowest one is up
                WorkerInfo w = a.getValue().get(Math.max(0, t0 + slowest + 2000 - now()), TimeUnit.MILLISECONDS);
                answered(address, tookMs.getOrDefault(address, now() - t0));
                if (w.getKind() != WorkerKind.WORKER_KIND_EXPERT || !w.getModelFingerprint().equals(fingerprint)) {
                    if (foreign.add(address)) LOG.warning("placement: " + address + " is not an expert shard of this model (" + w.getKind() + ", " + w.getModelFingerprint() + "); ignored");
                    continue;
                }
                if (dropped.remove(address)) LOG.info("placement: shard " + w.getWorkerId() + " at " + address + " answers again; it rejoins");
                live.put(address, w);
                answeredNow.put(address, w);
                if (w.hasExpertShard()) {
                    window.add(address, now, w.getExpertShard());
                    maxVersionSeen = Math.max(maxVersionSeen, w.getExpertShard().getPlacementVersion());
                }
            } catch (Exception e) {
                Status st = e instanceof java.util.concurrent.ExecutionException x ? Status.fromThrowable(x.getCause()) : Status.DEADLINE_EXCEEDED;
                notAnswered(address, st, askedMs.get(address));
            }
        }
        checkOtherControllers(answeredNow);
        for (Map.Entry<String, WorkerInfo> a : answeredNow.entrySet()) {
            if (a.getValue().hasExpertShard()) checkSoleController(a.getKey(), a.getValue());
        }
        if (standingBy) {
            view = buildView();
            return; // polls (so heartbeats) go on; every change is the later controller's
        }
        if (layout == null) {
            initial();
        } else {
            List<String> joining = new ArrayList<>();
            for (String a : live.keySet()) if (indexOfAddress(layout, a) < 0 && !stops.containsKey(a)) joining.add(a);
            if (!joining.isEmpty()) {
                List<String> members = addresses(layout);
                members.addAll(joining);
                LOG.info("placement: shards " + joining + " join");
                replan(members, "join", false);
            }
        }
        unloadDue(now());
        stopDrained(now());
        if (layout != null) {
            rebalanceIfNeeded(now());
            scale(now());
        }
        view = buildView();
    }

    /**
     * A shard only learns placement versions from Load/UnloadExperts, and this controller numbers its versions above
     * every one it has seen: a shard that reports a version above the newest this controller issued was told it by
     * another controller. Two controllers over the same shards undo each other's copies (each one's workers then find
     * their experts unloaded): several routers with lightmesh.placement-controller=true. The evidence of a controller
     * that sends no heartbeat (below); it stands {@link #VERSION_EVIDENCE_MS} after the newest such version. A version
     * seen while another controller's heartbeat is live is that controller's, and no evidence of a third.
     */
    private void checkSoleController(String address, WorkerInfo w) {
        long v = w.getExpertShard().getPlacementVersion();
        if (layout == null || v <= maxVersionIssued || v <= foreignVersion) return;
        foreignVersion = v;
        if (othersLive) return; // the heartbeats explain it (checkOtherControllers)
        versionConflict = "expert shard " + w.getWorkerId() + " at " + address + " reports placement version " + v
                + ", above any this controller issued (" + maxVersionIssued + "): another placement controller manages these shards"
                + " (more than one router with lightmesh.placement-controller=true over the same lightmesh.experts?); only one router may run it";
        versionConflictMs = now();
        logConflict();
    }

    /**
     * Every controller's Describe carries its heartbeat and every shard reports the heartbeats it heard (with their
     * age): a live one that is not this controller's, on any shard answering this poll, means another controller runs
     * over these shards, found at this controller's first poll after the other's first Describe, whether or not either
     * changes anything. Of the two, the one started later manages the shards (a rolling update of the router starts
     * the new pod before it stops the old one, and waits for the new one to be ready); the earlier one stands by: it
     * changes nothing (no re-placement, failover, scaling or unload) and its {@link #conflict()} (readiness) is DOWN
     * naming the other. When no shard reports another live controller any more (its heartbeat older than
     * {@link io.lightmesh.mesh.ControllerSightings#staleAfterMs}: 3 of its polls + 2 s) a stood-by controller takes
     * over from the shards' holdings as at its start.
     */
    private void checkOtherControllers(Map<String, WorkerInfo> answered) {
        io.lightmesh.proto.v1.ControllerSeen newest = null;
        String heardBy = null;
        boolean any = false;
        for (Map.Entry<String, WorkerInfo> a : answered.entrySet()) {
            for (io.lightmesh.proto.v1.ControllerSeen c : a.getValue().getExpertShard().getControllersList()) {
                if (c.getControllerId().equals(id)) continue;
                maxVersionOfOthers = Math.max(maxVersionOfOthers, c.getPublishedVersion());
                if (!io.lightmesh.mesh.ControllerSightings.live(c)) continue;
                any = true;
                if (io.lightmesh.mesh.ControllerSightings.later(c.getStartedUnixMs(), c.getControllerId(), startedUnixMs, id)
                        && (newest == null || io.lightmesh.mesh.ControllerSightings.later(c.getStartedUnixMs(), c.getControllerId(),
                                newest.getStartedUnixMs(), newest.getControllerId()))) {
                    newest = c;
                    heardBy = "expert shard " + a.getValue().getWorkerId() + " at " + a.getKey();
                }
            }
        }
        othersLive = any;
        if (any && !olderLogged && newest == null) {
            olderLogged = true;
            LOG.warning("placement: an earlier placement controller still runs over these shards; it stands by while this one (" + id + ") manages them");
        }
        if (!any) olderLogged = false;
        heartbeatConflict = newest == null ? null
                : "placement controller " + newest.getControllerId() + " (heard by " + heardBy + " " + newest.getAgeMs() + " ms ago), started after"
                  + " this one (" + id + "), runs over the same shards: another placement controller manages these shards, this one stands by"
                  + " (more than one router with lightmesh.placement-controller=true over the same lightmesh.experts? only one router may run it;"
                  + " during a router's rolling update this is the old pod)";
        boolean wasStandingBy = standingBy;
        standingBy = newest != null;
        if (standingBy) logConflict();
        if (wasStandingBy && !standingBy) {
            LOG.info("placement: the later placement controller is gone; this one (" + id + ") takes over from the shards' holdings");
            layout = null; // the later one may have changed the holdings: start again from them (initial)
            pending.clear();
            stops.clear();
            aboveSinceMs = scaleUpSinceMs = scaleDownSinceMs = -1;
        }
        if (conflictLogged && conflict() == null) {
            conflictLogged = false;
            LOG.info("placement: no conflicting placement controller heard from any more");
        }
    }

    private void logConflict() {
        if (conflictLogged) return;
        conflictLogged = true;
        LOG.severe("placement: " + conflict());
    }

    /**
     * Evidence that another placement controller manages the same shards (a misconfigured mesh), or null: another
     * controller's heartbeat reported by a shard at the last poll, else a placement version this controller did not
     * issue, seen within {@link #VERSION_EVIDENCE_MS}. The router's readiness is DOWN while it is set.
     */
    public String conflict() {
        String h = heartbeatConflict;
        if (h != null) return h;
        String v = versionConflict;
        return v != null && now() - versionConflictMs <= VERSION_EVIDENCE_MS ? v : null;
    }

    /** The Describe bound of a shard now: the base, or what it has grown to while the shard answers late. */
    private long boundOf(String address) { return bounds.getOrDefault(address, settings.liveness().describeMs()); }

    /** A shard answered within its bound after {@code ms}: its misses end and its bound shrinks toward 4x that (not below the base). */
    private void answered(String address, long ms) {
        Liveness l = settings.liveness();
        misses.remove(address);
        if (keptSlow.remove(address)) LOG.info("placement: slow shard at " + address + " answers again (" + ms + " ms)");
        long next = Math.max(l.describeMs(), Math.max(boundOf(address) / 2, 4 * ms));
        if (next == l.describeMs()) bounds.remove(address); else bounds.put(address, Math.min(next, l.describeMaxMs()));
    }

    /**
     * A shard's Describe failed. Refused by the transport (UNAVAILABLE): the shard is gone, dropped at once and its
     * experts re-placed. Anything else (a missed bound above all): slow, not dead: its bound doubles, and after
     * {@link Liveness#missesToDrop} misses in a row it is dropped only if every pair it holds has another holder
     * that answers.
     */
    private void notAnswered(String address, Status st, long boundMs) {
        Liveness l = settings.liveness();
        if (st.getCode() == Status.Code.UNAVAILABLE) {
            misses.remove(address);
            bounds.remove(address);
            keptSlow.remove(address);
            live.remove(address);
            if (layout != null && indexOfAddress(layout, address) >= 0) failover(address, "Describe refused (the shard is gone): " + st);
            return;
        }
        int missed = misses.merge(address, 1, Integer::sum);
        bounds.put(address, Math.min(l.describeMaxMs(), Math.max(boundOf(address), boundMs) * 2));
        if (missed < l.missesToDrop()) return;
        if (layout == null || indexOfAddress(layout, address) < 0) {
            live.remove(address); // not placed yet: it joins when it answers
            return;
        }
        int sole = pairsOnlyHeldBy(address);
        if (sole > 0) {
            if (keptSlow.add(address)) {
                LOG.warning("placement: shard " + idOf(address) + " at " + address + " has not answered within " + boundMs + " ms for "
                        + missed + " polls (" + st.getCode() + "), but it is the only answering holder of " + sole
                        + " (layer, expert) pairs: kept (a slow shard is not a dead one; its bound is now " + boundOf(address) + " ms)");
            }
            return;
        }
        misses.remove(address);
        bounds.remove(address);
        keptSlow.remove(address);
        live.remove(address);
        failover(address, "no answer within " + boundMs + " ms for " + missed + " polls (" + st + "); every pair it held has another answering holder");
    }

    /** How many (layer, expert) pairs {@code address} holds in the published placement that no answering other shard holds. */
    private int pairsOnlyHeldBy(String address) {
        int i = indexOfAddress(layout, address);
        if (i < 0) return 0;
        int n = 0;
        Layout.Shard me = layout.shards().get(i);
        for (int l = 0; l < numLayers; l++) {
            for (int e : me.experts()[l]) {
                boolean other = false;
                for (Layout.Shard s : layout.shards()) {
                    if (s == me || !s.holds(l, e)) continue;
                    if (live.containsKey(s.address()) && !misses.containsKey(s.address())) { other = true; break; }
                }
                if (!other) n++;
            }
        }
        return n;
    }

    /** The first placement: what the shards hold, when that covers the model; else a plan over them. */
    private void initial() {
        if (live.isEmpty()) return;
        List<Layout.Shard> shards = new ArrayList<>();
        for (Map.Entry<String, WorkerInfo> e : live.entrySet()) {
            shards.add(new Layout.Shard(e.getValue().getWorkerId(), e.getKey(), Layout.heldBy(e.getValue(), numLayers, numExperts)));
        }
        // above every version seen on a shard, issued before (a controller taking over) or published by another controller
        Layout held = new Layout(Math.max(maxVersionSeen, Math.max(maxVersionIssued, maxVersionOfOthers)) + 1, numLayers, numExperts, shards);
        maxVersionIssued = Math.max(maxVersionIssued, held.version());
        if (held.complete()) {
            publish(held);
            LOG.info("placement: version " + held.version() + " from the shards' holdings (" + shards.size() + " shards)");
        } else {
            replan(new ArrayList<>(live.keySet()), "initial", false);
        }
    }

    // ---- re-placement ----

    private void rebalanceIfNeeded(long now) {
        double[][] load = expertLoad();
        double imbalance = EplbPlanner.imbalance(EplbPlanner.shardLoads(load, plan(layout)));
        if (imbalance <= settings.imbalanceThreshold() || total(load) <= 0) {
            aboveSinceMs = -1;
            return;
        }
        if (aboveSinceMs < 0) aboveSinceMs = now;
        if (now - aboveSinceMs < settings.windowMs() || now - lastChangeMs < settings.windowMs() || !pending.isEmpty()) return;
        replan(addresses(layout), "imbalance " + String.format("%.2f", imbalance), true);
        aboveSinceMs = -1;
    }

    /**
     * Plans over {@code members} (addresses) with the window's load and applies the plan.
     *
     * @param onlyIfBetter skip a plan that would not lower the imbalance by at least 2%
     */
    private void replan(List<String> members, String reason, boolean onlyIfBetter) {
        long t0 = now();
        double[][] load = expertLoad();
        int[][] slots = new int[numLayers][members.size()];
        for (int l = 0; l < numLayers; l++) {
            for (int i = 0; i < members.size(); i++) slots[l][i] = Math.min(planningSlots(members.size(), l), hardSlotsPerLayer(members.get(i)));
        }
        EplbPlanner.Plan plan;
        try {
            plan = EplbPlanner.plan(load, slots);
        } catch (IllegalArgumentException e) {
            LOG.warning("placement: cannot plan (" + reason + "): " + e.getMessage());
            return;
        }
        Layout next = layoutOf(matchToHoldings(plan, members, slots), members);
        if (onlyIfBetter && layout != null) {
            double before = EplbPlanner.imbalance(EplbPlanner.shardLoads(load, plan(layout)));
            double after = EplbPlanner.imbalance(EplbPlanner.shardLoads(load, plan(next)));
            if (after > before * 0.98) {
                LOG.info(String.format("placement: %s, but the best plan reaches %.2f; kept", reason, after));
                lastChangeMs = now();
                return;
            }
        }
        if (apply(next)) {
            rebalances++;
            lastReplaceMs = now() - t0;
            LOG.info(String.format("placement: version %d (%s) published in %d ms over %d shards, imbalance now %.2f",
                    next.version(), reason, lastReplaceMs, members.size(), EplbPlanner.imbalance(EplbPlanner.shardLoads(load, plan(next)))));
        }
    }

    /** Experts of {@code layer} a shard of {@code shards} may hold when planning: its share plus its spare slots of that layer. */
    private int planningSlots(int shards, int layer) {
        int share = (numExperts + shards - 1) / shards;
        int extra = settings.extraSlots() < 0 ? 2 * numLayers : settings.extraSlots();
        return share + extra / numLayers + (layer < extra % numLayers ? 1 : 0);
    }

    /** Per layer: a shard's hard capacity (its slot_capacity over the layers); unbounded when it does not say. */
    private int hardSlotsPerLayer(String address) {
        WorkerInfo w = live.get(address);
        int cap = w == null || !w.hasExpertShard() ? 0 : w.getExpertShard().getSlotCapacity();
        return cap <= 0 ? numExperts : Math.max(1, Math.min(numExperts, cap / numLayers));
    }

    /**
     * Renumbers the planner's shards, per layer, so that as many planned copies as possible land where they are held
     * now (fewer loads and unloads): planned shards of equal slots are interchangeable, so each is given to the
     * member with the largest overlap, greedily.
     */
    private int[][][] matchToHoldings(EplbPlanner.Plan plan, List<String> members, int[][] slotsByLayer) {
        int S = members.size();
        int[][][] out = new int[numLayers][S][];
        for (int l = 0; l < numLayers; l++) {
            int[][] planned = plan.experts()[l];
            int[] slots = slotsByLayer[l];
            int[][] held = new int[S][];
            for (int s = 0; s < S; s++) held[s] = heldNow(members.get(s), l);
            boolean[] usedBin = new boolean[S], usedShard = new boolean[S];
            for (int round = 0; round < S; round++) {
                int bestBin = -1, bestShard = -1, bestOverlap = -1;
                for (int b = 0; b < S; b++) {
                    if (usedBin[b]) continue;
                    for (int s = 0; s < S; s++) {
                        if (usedShard[s] || slots[s] != slots[b]) continue;
                        int o = overlap(planned[b], held[s]);
                        if (o > bestOverlap) { bestOverlap = o; bestBin = b; bestShard = s; }
                    }
                }
                if (bestBin < 0) break;
                usedBin[bestBin] = usedShard[bestShard] = true;
                out[l][bestShard] = planned[bestBin];
            }
            for (int s = 0; s < S; s++) if (out[l][s] == null) out[l][s] = planned[s]; // unmatched: slots differ, keep order
        }
        return out;
    }

    private int[] heldNow(String address, int layer) {
        if (layout != null) {
            int i = indexOfAddress(layout, address);
            if (i >= 0) return layout.shards().get(i).experts()[layer];
        }
        WorkerInfo w = live.get(address);
        return w == null ? new int[0] : Layout.heldBy(w, numLayers, numExperts)[layer];
    }

    private static int overlap(int[] a, int[] b) {
        int n = 0;
        for (int x : a) if (Arrays.binarySearch(b, x) >= 0) n++;
        return n;
    }

    private Layout layoutOf(int[][][] byLayer, List<String> members) {
        List<Layout.Shard> shards = new ArrayList<>();
        for (int s = 0; s < members.size(); s++) {
            int[][] ex = new int[numLayers][];
            for (int l = 0; l < numLayers; l++) ex[l] = byLayer[l][s];
            shards.add(new Layout.Shard(idOf(members.get(s)), members.get(s), ex));
        }
        return new Layout(nextVersion(), numLayers, numExperts, shards);
    }

    private long nextVersion() {
        long v = Math.max(Math.max(layout == null ? 0 : layout.version(), maxVersionSeen), Math.max(maxVersionIssued, maxVersionOfOthers)) + 1;
        maxVersionIssued = v;
        return v;
    }

    private String idOf(String address) {
        WorkerInfo w = live.get(address);
        if (w != null) return w.getWorkerId();
        if (layout != null) {
            int i = indexOfAddress(layout, address);
            if (i >= 0) return layout.shards().get(i).id();
        }
        return address;
    }

    /**
     * Loads every new copy, publishes {@code next}, and schedules the unloading of the copies it no longer lists.
     * A shard that fails its load is failed over (and {@code next} abandoned); one that refuses (full) abandons it.
     */
    private boolean apply(Layout planned) {
        Layout next = makeRoom(planned);
        Map<String, Future<?>> loads = new LinkedHashMap<>();
        for (Layout.Shard s : next.shards()) {
            int[][] before = holdingsOf(s.address());
            int[][] add = s.minus(before);
            if (!Layout.isEmpty(add)) loads.put(s.address(), calls.submit(() -> clients.load(s.address(), add, next.version())));
        }
        List<String> failed = new ArrayList<>();
        boolean refused = false;
        for (Map.Entry<String, Future<?>> f : loads.entrySet()) {
            try {
                f.getValue().get(settings.rpcTimeoutMs() + 5000, TimeUnit.MILLISECONDS);
            } catch (Exception e) {
                Status st = e instanceof java.util.concurrent.ExecutionException x ? Status.fromThrowable(x.getCause()) : Status.DEADLINE_EXCEEDED;
                if (st.getCode() == Status.Code.UNAVAILABLE || st.getCode() == Status.Code.DEADLINE_EXCEEDED) failed.add(f.getKey());
                else refused = true;
                LOG.warning("placement: loading experts on " + f.getKey() + " for version " + next.version() + " failed: " + st);
            }
        }
        if (!failed.isEmpty() || refused) {
            // the copies that did load are extras no published version lists: unloaded now, or they would keep the
            // slots the next attempt needs (no worker routes to them)
            for (Map.Entry<String, Future<?>> f : loads.entrySet()) {
                if (f.getValue().state() != Future.State.SUCCESS || failed.contains(f.getKey())) continue;
                int i = indexOfAddress(next, f.getKey());
                if (i >= 0) pending.add(new PendingUnload(f.getKey(), next.shards().get(i).experts(), now()));
            }
            for (String a : failed) if (layout != null && indexOfAddress(layout, a) >= 0) failover(a, "LoadExperts failed");
            lastChangeMs = now();
            return false;
        }
        Layout before = layout;
        publish(next);
        if (before != null) {
            for (Layout.Shard s : before.shards()) {
                int i = indexOfAddress(next, s.address());
                int[][] drop = i < 0 ? s.experts() : s.minus(next.shards().get(i).experts());
                if (!Layout.isEmpty(drop)) pending.add(new PendingUnload(s.address(), drop, now() + settings.drainGraceMs()));
            }
        }
        for (Layout.Shard s : next.shards()) {
            // a joining shard may hold copies from an earlier life that this version does not use
            WorkerInfo w = live.get(s.address());
            if ((before == null || indexOfAddress(before, s.address()) < 0) && w != null) {
                int[][] stale = new Layout.Shard("", s.address(), Layout.heldBy(w, numLayers, numExperts)).minus(s.experts());
                if (!Layout.isEmpty(stale)) pending.add(new PendingUnload(s.address(), stale, now() + settings.drainGraceMs()));
            }
        }
        return true;
    }

    /**
     * New copies are loaded before old ones are dropped, so a shard needs free slots for its new copies beside what
     * it holds. Where some shard has too few (its slot capacity is its planning slots, say), the way to {@code next}
     * goes in steps, each published version complete: (a) every shard loads what fits of its new copies (the
     * copies with fewest holders first: they let other shards give up theirs soonest) and a version adding them is published; (b) a
     * shard still short gives up copies that {@code next} drops from it and that another shard of the published
     * version also holds: a version without them is published (workers on an older one that still send those rows
     * there are refused in band and go to the other copy) and they are unloaded, drained. At most 8 rounds, while
     * they progress. Answers {@code next}, renumbered after any interim version.
     */
    private Layout makeRoom(Layout next) {
        if (layout == null) return next;
        Map<String, Integer> used = new HashMap<>();
        boolean interim = false;
        for (int round = 0; round < 8; round++) {
            Layout cur = layout;
            Map<String, int[][]> adds = new LinkedHashMap<>(), loadNow = new LinkedHashMap<>();
            boolean tight = false;
            for (Layout.Shard s : next.shards()) {
                int i = indexOfAddress(cur, s.address());
                if (i < 0) continue;
                Layout.Shard held = cur.shards().get(i);
                int[][] add = s.minus(held.experts());
                if (Layout.isEmpty(add)) continue;
                adds.put(s.address(), add);
                int free = freeSlots(s.address(), held, used);
                if (pairs(add) > free) tight = true;
                if (free > 0) loadNow.put(s.address(), fewestHoldersFirst(cur, add, Math.min(free, pairs(add))));
            }
            if (!tight) break;
            boolean progressed = false;
            // (a) load what fits, publish a version that adds it
            if (!loadNow.isEmpty()) {
                long v = nextVersion();
                Map<String, Future<?>> loads = new LinkedHashMap<>();
                for (Map.Entry<String, int[][]> en : loadNow.entrySet()) {
                    loads.put(en.getKey(), calls.submit(() -> clients.load(en.getKey(), en.getValue(), v)));
                }
                List<Layout.Shard> shards = new ArrayList<>(cur.shards());
                for (Map.Entry<String, Future<?>> f : loads.entrySet()) {
                    try {
                        f.getValue().get(settings.rpcTimeoutMs() + 5000, TimeUnit.MILLISECONDS);
                    } catch (Exception e) {
                        LOG.warning("placement: loading part of the new copies on " + f.getKey() + " failed: " + e);
                        continue;
                    }
                    int i = indexOfAddress(cur, f.getKey());
                    Layout.Shard h = shards.get(i);
                    shards.set(i, new Layout.Shard(h.id(), h.address(), union(h.experts(), loadNow.get(f.getKey()))));
                    used.merge(f.getKey(), pairs(loadNow.get(f.getKey())), Integer::sum);
                    progressed = true;
                }
                if (progressed) {
                    publish(new Layout(v, numLayers, numExperts, shards));
                    interim = true;
                    cur = layout;
                }
            }
            // (b) shards still short give up copies the next version drops and another shard holds
            Map<String, int[][]> early = new LinkedHashMap<>();
            int[][] copies = new int[numLayers][numExperts];
            for (int l = 0; l < numLayers; l++) for (int e = 0; e < numExperts; e++) copies[l][e] = cur.copies(l, e);
            for (Layout.Shard s : next.shards()) {
                int i = indexOfAddress(cur, s.address());
                if (i < 0) continue;
                Layout.Shard held = cur.shards().get(i);
                int short_ = pairs(s.minus(held.experts())) - freeSlots(s.address(), held, used);
                if (short_ <= 0) continue;
                int[][] drop = held.minus(s.experts());
                int[][] g = new int[numLayers][];
                for (int l = 0; l < numLayers; l++) {
                    List<Integer> give = new ArrayList<>();
                    for (int e : drop[l]) {
                        if (short_ == 0) break;
                        if (copies[l][e] < 2) continue; // its only copy: it stays until the new one is loaded elsewhere
                        copies[l][e]--;
                        give.add(e);
                        short_--;
                    }
                    g[l] = give.stream().mapToInt(Integer::intValue).toArray();
                }
                if (!Layout.isEmpty(g)) early.put(s.address(), g);
            }
            if (!early.isEmpty()) {
                List<Layout.Shard> shards = new ArrayList<>();
                for (Layout.Shard h : cur.shards()) {
                    int[][] g = early.get(h.address());
                    shards.add(g == null ? h : new Layout.Shard(h.id(), h.address(), h.minus(g)));
                }
                Layout without = new Layout(nextVersion(), numLayers, numExperts, shards);
                publish(without);
                interim = true;
                Map<String, Future<?>> unloads = new LinkedHashMap<>();
                long drain = Math.min(settings.drainGraceMs(), 10_000);
                for (Map.Entry<String, int[][]> en : early.entrySet()) {
                    unloads.put(en.getKey(), calls.submit(() -> clients.unload(en.getKey(), en.getValue(), without.version(), drain)));
                }
                for (Map.Entry<String, Future<?>> f : unloads.entrySet()) {
                    try {
                        f.getValue().get(settings.rpcTimeoutMs() + drain + 5000, TimeUnit.MILLISECONDS);
                        used.merge(f.getKey(), -pairs(early.get(f.getKey())), Integer::sum);
                        progressed = true;
                    } catch (Exception e) { // the load that needed the room will be refused, and the attempt abandoned
                        LOG.warning("placement: unloading copies on " + f.getKey() + " to make room failed: " + e);
                    }
                }
            }
            if (!progressed) break;
        }
        if (!interim) return next;
        LOG.info("placement: made room for version " + next.version() + " in steps, now at " + layout.version());
        return new Layout(nextVersion(), numLayers, numExperts, next.shards());
    }

    /** Up to {@code n} pairs of {@code add}, those with fewest copies in {@code l} first (ties: layer, then expert). */
    private int[][] fewestHoldersFirst(Layout l, int[][] add, int n) {
        List<int[]> all = new ArrayList<>();
        for (int layer = 0; layer < numLayers; layer++) for (int e : add[layer]) all.add(new int[] {l.copies(layer, e), layer, e});
        all.sort(java.util.Comparator.<int[]>comparingInt(x -> x[0]).thenComparingInt(x -> x[1]).thenComparingInt(x -> x[2]));
        List<List<Integer>> pick = new ArrayList<>();
        for (int layer = 0; layer < numLayers; layer++) pick.add(new ArrayList<>());
        for (int i = 0; i < Math.min(n, all.size()); i++) pick.get(all.get(i)[1]).add(all.get(i)[2]);
        int[][] out = new int[numLayers][];
        for (int layer = 0; layer < numLayers; layer++) out[layer] = pick.get(layer).stream().mapToInt(Integer::intValue).sorted().toArray();
        return out;
    }

    private static int[][] union(int[][] a, int[][] b) {
        int[][] out = new int[a.length][];
        for (int l = 0; l < a.length; l++) out[l] = java.util.stream.IntStream.concat(Arrays.stream(a[l]), Arrays.stream(b[l])).distinct().sorted().toArray();
        return out;
    }

    /**
     * Slots a shard has free: its capacity (unbounded when it does not say) less what it holds: its last Describe
     * corrected by what this re-placement loaded and unloaded there since ({@code changed}), or the published
     * placement's count, the larger.
     */
    private int freeSlots(String address, Layout.Shard held, Map<String, Integer> changed) {
        WorkerInfo w = live.get(address);
        if (w == null || !w.hasExpertShard() || w.getExpertShard().getSlotCapacity() <= 0) return Integer.MAX_VALUE;
        int described = w.getExpertShard().getSlotsUsed() + changed.getOrDefault(address, 0);
        return w.getExpertShard().getSlotCapacity() - Math.max(described, held.pairs());
    }

    private static int pairs(int[][] ex) {
        int n = 0;
        for (int[] l : ex) n += l.length;
        return n;
    }

    /** What a shard holds as far as the controller knows: the published placement, else its last Describe. */
    private int[][] holdingsOf(String address) {
        if (layout != null) {
            int i = indexOfAddress(layout, address);
            if (i >= 0) return layout.shards().get(i).experts();
        }
        WorkerInfo w = live.get(address);
        if (w != null) return Layout.heldBy(w, numLayers, numExperts);
        int[][] none = new int[numLayers][];
        Arrays.fill(none, new int[0]);
        return none;
    }

    private void publish(Layout next) {
        layout = next;
        lastChangeMs = now();
        io.lightmesh.proto.v1.PlacementMap map = next.toProto();
        service.publish(map);
        for (var l : listeners) {
            try { l.accept(map); } catch (RuntimeException e) { LOG.log(Level.WARNING, "placement listener failed", e); }
        }
        view = buildView();
    }

    private void unloadDue(long now) {
        for (java.util.Iterator<PendingUnload> it = pending.iterator(); it.hasNext(); ) {
            PendingUnload p = it.next();
            if (p.dueMs() > now) continue;
            it.remove();
            if (!live.containsKey(p.address()) || stops.containsKey(p.address())) continue; // gone, or stopped whole soon
            // a later version may have placed some of them here again
            int i = layout == null ? -1 : indexOfAddress(layout, p.address());
            int[][] drop = i < 0 ? p.experts() : new Layout.Shard("", p.address(), p.experts()).minus(layout.shards().get(i).experts());
            if (Layout.isEmpty(drop)) continue;
            long version = layout == null ? 0 : layout.version();
            calls.submit(() -> {
                try {
                    clients.unload(p.address(), drop, version, Math.min(settings.drainGraceMs(), 10_000));
                } catch (StatusRuntimeException e) {
                    LOG.info("placement: unloading old copies on " + p.address() + ": " + e.getStatus());
                }
            });
        }
    }

    // ---- failover ----

    private void onReport(UnreachableReport r) {
        loop.execute(() -> {
            String address = r.getAddress();
            if (address.isEmpty() && layout != null) {
                for (Layout.Shard s : layout.shards()) if (s.id().equals(r.getShardId())) address = s.address();
            }
            if (address.isEmpty() || layout == null || indexOfAddress(layout, address) < 0) return;
            try {
                clients.describe(address, Math.max(settings.liveness().describeMs(), boundOf(address)));
                LOG.info("placement: " + r.getReporterId() + " reported " + address + " unreachable (" + r.getReason() + "), but it answers; kept");
            } catch (StatusRuntimeException e) {
                // a probe that times out leaves the shard to the polls (slow is not dead); refused drops it now
                if (e.getStatus().getCode() != Status.Code.UNAVAILABLE) {
                    LOG.info("placement: " + r.getReporterId() + " reported " + address + " unreachable; the probe timed out, the polls decide");
                    return;
                }
                failover(address, r.getReporterId() + " reported " + r.getReason() + "; probe: " + e.getStatus());
                view = buildView();
            }
        });
    }

    /**
     * Drops a shard from the placement at once. The pairs it alone held go to the survivors, least loaded first;
     * a survivor that fails its load is dropped too; one that refuses (full) is passed over. Publishes the result,
     * complete or not (with no survivor, workers learn that no shard is left).
     */
    private void failover(String address, String why) {
        if (layout == null || indexOfAddress(layout, address) < 0 || standingBy) return;
        failovers++;
        LOG.warning("placement: shard " + idOf(address) + " at " + address + " dropped: " + why);
        live.remove(address);
        dropped.add(address);
        misses.remove(address);
        bounds.remove(address);
        keptSlow.remove(address);
        window.forget(address);
        pending.removeIf(p -> p.address().equals(address));
        clients.forget(address);

        List<String> survivors = addresses(layout);
        survivors.remove(address);
        Set<String> full = new HashSet<>();
        double[][] load = expertLoad();
        Layout next;
        while (true) {
            // the survivors' holdings, then each orphan onto the survivor with the least load in its layer
            Map<String, List<Set<Integer>>> holds = new LinkedHashMap<>();
            for (String s : survivors) {
                int[][] h = holdingsOf(s);
                List<Set<Integer>> per = new ArrayList<>();
                for (int l = 0; l < numLayers; l++) {
                    Set<Integer> set = new java.util.TreeSet<>();
                    for (int e : h[l]) set.add(e);
                    per.add(set);
                }
                holds.put(s, per);
            }
            Map<String, int[][]> adds = new LinkedHashMap<>();

            for (int l = 0; l < numLayers; l++) {
                List<Integer> orphans = new ArrayList<>();
                for (int e = 0; e < numExperts; e++) {
                    boolean held = false;
                    for (List<Set<Integer>> h : holds.values()) held |= h.get(l).contains(e);
                    if (!held) orphans.add(e);
                }
                final int layer = l;
                orphans.sort((a, b) -> Double.compare(load[layer][b], load[layer][a]));
                for (int e : orphans) {
                    String pick = null;
                    double pickLoad = 0;
                    boolean pickFree = false;
                    for (String s : survivors) {
                        if (full.contains(s)) continue;
                        Set<Integer> h = holds.get(s).get(l);
                        boolean free = h.size() < planningSlots(survivors.size(), l);
                        double sl = layerLoad(load[l], holds, s, l);
                        if (pick == null || (free && !pickFree) || (free == pickFree && sl < pickLoad)) { pick = s; pickLoad = sl; pickFree = free; }
                    }
                    if (pick == null) continue;
                    if (!pickFree) LOG.warning("placement: emergency copy of expert " + e + " of layer " + l + " on " + pick + " beyond its planning slots");
                    holds.get(pick).get(l).add(e);
                    adds.computeIfAbsent(pick, k -> emptyLayers())[l] = append(adds.get(pick)[l], e);
                }
            }
            List<Layout.Shard> shards = new ArrayList<>();
            for (String s : survivors) {
                int[][] ex = new int[numLayers][];
                for (int l = 0; l < numLayers; l++) ex[l] = holds.get(s).get(l).stream().mapToInt(Integer::intValue).toArray();
                shards.add(new Layout.Shard(idOf(s), s, ex));
            }
            next = new Layout(nextVersion(), numLayers, numExperts, shards);
            // load the orphans
            Map<String, Future<?>> loads = new LinkedHashMap<>();
            final long version = next.version();
            for (Map.Entry<String, int[][]> a : adds.entrySet()) loads.put(a.getKey(), calls.submit(() -> clients.load(a.getKey(), a.getValue(), version)));
            List<String> failedNow = new ArrayList<>();
            boolean again = false;
            for (Map.Entry<String, Future<?>> f : loads.entrySet()) {
                try {
                    f.getValue().get(settings.rpcTimeoutMs() + 5000, TimeUnit.MILLISECONDS);
                } catch (Exception e) {
                    Status st = e instanceof java.util.concurrent.ExecutionException x ? Status.fromThrowable(x.getCause()) : Status.DEADLINE_EXCEEDED;
                    LOG.warning("placement: failover load on " + f.getKey() + ": " + st);
                    if (st.getCode() == Status.Code.RESOURCE_EXHAUSTED) full.add(f.getKey());
                    else failedNow.add(f.getKey());
                    again = true;
                }
            }
            if (!again) break;
            for (String a : failedNow) {
                survivors.remove(a);
                live.remove(a);
                dropped.add(a);
                window.forget(a);
                failovers++;
                LOG.warning("placement: shard at " + a + " dropped too: its load failed");
            }
            if (survivors.stream().allMatch(full::contains)) {
                next = new Layout(nextVersion(), numLayers, numExperts, next.shards());
                break;
            }
        }
        publish(next);
        if (!next.complete()) {
            LOG.severe("placement: version " + next.version() + " leaves (layer, expert) pairs without a shard"
                    + (next.shards().isEmpty() ? ": no expert shard is left" : ""));
        } else {
            LOG.info("placement: version " + next.version() + " after failover, " + next.shards().size() + " shards");
        }
        aboveSinceMs = -1;
    }

    private double layerLoad(double[] load, Map<String, List<Set<Integer>>> holds, String shard, int layer) {
        double x = 0;
        for (int e : holds.get(shard).get(layer)) {
            int copies = 0;
            for (List<Set<Integer>> h : holds.values()) if (h.get(layer).contains(e)) copies++;
            x += load[e] / copies;
        }
        return x;
    }

    private int[][] emptyLayers() {
        int[][] a = new int[numLayers][];
        Arrays.fill(a, new int[0]);
        return a;
    }

    private static int[] append(int[] a, int e) {
        int[] b = Arrays.copyOf(a, a.length + 1);
        b[a.length] = e;
        Arrays.sort(b);
        return b;
    }

    // ---- scaling ----

    private void scale(long now) {
        if (pool == null || !stops.isEmpty()) return;
        int current = layout.shards().size();
        int desired = desired();
        if (current < settings.demand().min()) desired = settings.demand().min(); // lost shards: replace at once
        if (desired > current) {
            scaleDownSinceMs = -1;
            if (scaleUpSinceMs < 0) scaleUpSinceMs = now;
            if (current >= settings.demand().min() && now - scaleUpSinceMs < settings.windowMs() / 2) return;
            scaleUpSinceMs = -1;
            try {
                String address = pool.start();
                started.add(address);
                LOG.info("placement: started shard " + address + " (" + current + " -> " + (current + 1) + ", desired " + desired + ")");
            } catch (Exception e) {
                LOG.warning("placement: cannot start a shard: " + e);
            }
        } else if (desired < current) {
            scaleUpSinceMs = -1;
            if (scaleDownSinceMs < 0) scaleDownSinceMs = now;
            if (now - scaleDownSinceMs < settings.windowMs() || !pending.isEmpty()) return;
            scaleDownSinceMs = -1;
            // the least-loaded shard goes; its copies are re-planned onto the others first
            double[] shardLoads = EplbPlanner.shardLoads(expertLoad(), plan(layout));
            int victim = 0;
            for (int s = 1; s < shardLoads.length; s++) if (shardLoads[s] < shardLoads[victim]) victim = s;
            String address = layout.shards().get(victim).address();
            List<String> members = addresses(layout);
            members.remove(address);
            Layout before = layout;
            replan(members, "drain " + address, false);
            if (layout != before && indexOfAddress(layout, address) < 0) {
                retired.add(address);
                stops.put(address, now() + settings.drainGraceMs());
                LOG.info("placement: draining shard at " + address + " (" + current + " -> " + (current - 1) + ", desired " + desired + ")");
            }
        } else {
            scaleUpSinceMs = scaleDownSinceMs = -1;
        }
    }

    private void stopDrained(long now) {
        for (java.util.Iterator<Map.Entry<String, Long>> it = stops.entrySet().iterator(); it.hasNext(); ) {
            Map.Entry<String, Long> s = it.next();
            if (s.getValue() > now) continue;
            it.remove();
            live.remove(s.getKey());
            started.remove(s.getKey());
            window.forget(s.getKey());
            pending.removeIf(p -> p.address().equals(s.getKey()));
            clients.forget(s.getKey());
            try {
                pool.stop(s.getKey());
                LOG.info("placement: stopped drained shard at " + s.getKey());
            } catch (RuntimeException e) {
                LOG.warning("placement: stopping " + s.getKey() + ": " + e);
            }
        }
    }

    private int desired() {
        double total = 0;
        for (double[] l : expertLoad()) total += Arrays.stream(l).sum();
        double cap = 0;
        int n = 0;
        for (String a : live.keySet()) {
            double c = window.capacity(a);
            if (!Double.isNaN(c)) { cap += c; n++; }
        }
        if (n > 0) lastCapacity = cap / n; // an idle window measures nothing: the last measurement stands
        int current = layout == null ? live.size() : layout.shards().size();
        return settings.demand().desired(total, lastCapacity, current);
    }

    // ---- views ----

    private double[][] expertLoad() {
        double[] r = window.expertRates();
        double[][] out = new double[numLayers][numExperts];
        for (int l = 0; l < numLayers; l++) System.arraycopy(r, l * numExperts, out[l], 0, numExperts);
        return out;
    }

    private static double total(double[][] load) {
        double t = 0;
        for (double[] l : load) for (double x : l) t += x;
        return t;
    }

    private static EplbPlanner.Plan plan(Layout l) { return new EplbPlanner.Plan(l.byLayer()); }

    private static int indexOfAddress(Layout l, String address) {
        for (int i = 0; i < l.shards().size(); i++) if (l.shards().get(i).address().equals(address)) return i;
        return -1;
    }

    private static List<String> addresses(Layout l) {
        List<String> a = new ArrayList<>();
        for (Layout.Shard s : l.shards()) a.add(s.address());
        return a;
    }

    private PlacementView buildView() {
        if (layout == null) return PlacementView.EMPTY;
        double[][] load = expertLoad();
        double[] shardLoads = EplbPlanner.shardLoads(load, plan(layout));
        List<PlacementView.ShardView> shards = new ArrayList<>();
        for (int s = 0; s < layout.shards().size(); s++) {
            Layout.Shard sh = layout.shards().get(s);
            List<int[]> pairs = new ArrayList<>();
            for (int l = 0; l < numLayers; l++) for (int e : sh.experts()[l]) pairs.add(new int[]{l, e});
            shards.add(new PlacementView.ShardView(sh.id(), sh.address(), pairs, shardLoads[s]));
        }
        List<PlacementView.ExpertView> experts = new ArrayList<>();
        for (int l = 0; l < numLayers; l++) {
            for (int e = 0; e < numExperts; e++) {
                List<String> replicas = new ArrayList<>();
                for (Layout.Shard sh : layout.shards()) if (sh.holds(l, e)) replicas.add(sh.id());
                experts.add(new PlacementView.ExpertView(l, e, load[l][e], replicas));
            }
        }
        int n = layout.shards().size();
        return new PlacementView(layout.version(), settings.windowMs() / 1000.0, EplbPlanner.imbalance(shardLoads),
                EplbPlanner.imbalanceStatic(load, n), desired(), shards, experts);
    }

    @Override
    public void close() {
        loop.shutdownNow();
        try {
            loop.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        service.close();
        calls.shutdownNow();
        clients.close();
        if (metrics != null) metrics.close();
    }
}
