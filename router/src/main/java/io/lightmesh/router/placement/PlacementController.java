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
 *   <li><b>Failover</b>: a shard that refuses its Describe (UNAVAILABLE: nothing listens), that misses three polls in a
 *       row, or that a worker reports and that then refuses a probe, is dropped at once; the (layer, expert) pairs it alone held are loaded onto the least-loaded survivors, beyond
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
     * @param rpcTimeoutMs       deadline of LoadExperts / UnloadExperts (Describe: min(pollMs, 2 s), at least 500 ms)
     * @param demand             the shard count the load needs; its min/max bound a {@link ShardPool}
     */
    public record Settings(long pollMs, long windowMs, double imbalanceThreshold, int extraSlots, long drainGraceMs,
                           long rpcTimeoutMs, ShardDemand demand) {
        public Settings {
            if (pollMs < 10 || windowMs < pollMs) throw new IllegalArgumentException("need 10 ms <= poll <= window, got " + pollMs + " / " + windowMs);
            if (!(imbalanceThreshold >= 1)) throw new IllegalArgumentException("imbalance threshold must be >= 1, got " + imbalanceThreshold);
            if (extraSlots < -1) throw new IllegalArgumentException("expert slots must be >= 0, got " + extraSlots);
        }

        /** Poll every second, 60 s window, threshold 1.25, 2 spare slots per layer, 10 s grace, 70% utilisation. */
        public static Settings defaults() {
            return new Settings(1000, 60_000, 1.25, -1, 10_000, 30_000, new ShardDemand(0.7, 1, Integer.MAX_VALUE));
        }

        public Settings withWindow(long pollMs, long windowMs) {
            return new Settings(pollMs, windowMs, imbalanceThreshold, extraSlots, drainGraceMs, rpcTimeoutMs, demand);
        }

        public Settings withThreshold(double t) {
            return new Settings(pollMs, windowMs, t, extraSlots, drainGraceMs, rpcTimeoutMs, demand);
        }

        public Settings withExtraSlots(int k) {
            return new Settings(pollMs, windowMs, imbalanceThreshold, k, drainGraceMs, rpcTimeoutMs, demand);
        }

        public Settings withDrainGraceMs(long ms) {
            return new Settings(pollMs, windowMs, imbalanceThreshold, extraSlots, ms, rpcTimeoutMs, demand);
        }

        public Settings withDemand(ShardDemand d) {
            return new Settings(pollMs, windowMs, imbalanceThreshold, extraSlots, drainGraceMs, rpcTimeoutMs, d);
        }
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
    private final Map<String, Integer> misses = new HashMap<>(); // address -> polls in a row without an answer
    /** Polls in a row a shard may fail to answer in time (not refused) before it is dropped. */
    static final int MISSES_TO_DROP = 3;
    private long aboveSinceMs = -1, lastChangeMs, scaleUpSinceMs = -1, scaleDownSinceMs = -1;
    private long maxVersionSeen;
    private double lastCapacity = Double.NaN; // tokens per compute-second of one shard, last measured

    private final List<java.util.function.Consumer<io.lightmesh.proto.v1.PlacementMap>> listeners = new java.util.concurrent.CopyOnWriteArrayList<>();
    private volatile PlacementView view = PlacementView.EMPTY;
    private volatile long rebalances, failovers, lastReplaceMs = -1;

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
        // a shard computing a long batch may answer Describe late: a slow answer is not a dead shard
        long describeMs = Math.max(2000, settings.pollMs());
        for (String t : targets) {
            // first contact (connection set-up, a cold JVM) gets longer than a known shard
            long ms = live.containsKey(t) ? describeMs : Math.max(describeMs, 5000);
            asked.put(t, calls.submit(() -> clients.describe(t, ms)));
        }
        for (Map.Entry<String, Future<WorkerInfo>> a : asked.entrySet()) {
            String address = a.getKey();
            try {
                WorkerInfo w = a.getValue().get(Math.max(describeMs, 5000) + 2000, TimeUnit.MILLISECONDS);
                if (w.getKind() != WorkerKind.WORKER_KIND_EXPERT || !w.getModelFingerprint().equals(fingerprint)) {
                    LOG.warning("placement: " + address + " is not an expert shard of this model (" + w.getKind() + ", " + w.getModelFingerprint() + "); ignored");
                    continue;
                }
                if (dropped.remove(address)) LOG.info("placement: shard " + w.getWorkerId() + " at " + address + " answers again; it rejoins");
                misses.remove(address);
                live.put(address, w);
                if (w.hasExpertShard()) {
                    window.add(address, now, w.getExpertShard());
                    maxVersionSeen = Math.max(maxVersionSeen, w.getExpertShard().getPlacementVersion());
                }
            } catch (Exception e) {
                Status st = e instanceof java.util.concurrent.ExecutionException x ? Status.fromThrowable(x.getCause()) : Status.DEADLINE_EXCEEDED;
                // refused (UNAVAILABLE: nothing listens, connection reset) drops it at once; no answer in time, after
                // MISSES_TO_DROP polls in a row (a busy shard answers late; a hung one never does)
                int missed = misses.merge(address, 1, Integer::sum);
                boolean gone = st.getCode() == Status.Code.UNAVAILABLE || missed >= MISSES_TO_DROP;
                if (!gone) continue;
                live.remove(address);
                if (layout != null && indexOfAddress(layout, address) >= 0) failover(address, "Describe failed: " + st + (missed > 1 ? " (" + missed + " polls)" : ""));
            }
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

    /** The first placement: what the shards hold, when that covers the model; else a plan over them. */
    private void initial() {
        if (live.isEmpty()) return;
        List<Layout.Shard> shards = new ArrayList<>();
        for (Map.Entry<String, WorkerInfo> e : live.entrySet()) {
            shards.add(new Layout.Shard(e.getValue().getWorkerId(), e.getKey(), Layout.heldBy(e.getValue(), numLayers, numExperts)));
        }
        Layout held = new Layout(maxVersionSeen + 1, numLayers, numExperts, shards);
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

    private long nextVersion() { return Math.max(layout == null ? 0 : layout.version(), maxVersionSeen) + 1; }

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
    private boolean apply(Layout next) {
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
            // the copies that did load are harmless extras: the next published version tells what to unload
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
                clients.describe(address, 2000);
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
        if (layout == null || indexOfAddress(layout, address) < 0) return;
        failovers++;
        LOG.warning("placement: shard " + idOf(address) + " at " + address + " dropped: " + why);
        live.remove(address);
        dropped.add(address);
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
