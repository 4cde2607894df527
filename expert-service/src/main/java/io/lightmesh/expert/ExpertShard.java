package io.lightmesh.expert;

import io.grpc.BindableService;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.model.DeviceExperts;
import io.lightmesh.engine.backend.opencl.OpenClOps;
import io.lightmesh.engine.backend.opencl.ResidentOps;
import io.lightmesh.engine.model.LocalExperts;
import io.lightmesh.engine.tensor.Tensor;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.WireRows;
import com.google.protobuf.ByteString;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.proto.v1.ActivationDType;
import io.lightmesh.proto.v1.BatchError;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.ExpertAssignment;
import io.lightmesh.proto.v1.ExpertBatch;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.ExpertResult;
import io.lightmesh.proto.v1.ExpertShardInfo;
import io.lightmesh.proto.v1.LayerExperts;
import io.lightmesh.proto.v1.LoadExpertsRequest;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.PlacementRequest;
import io.lightmesh.proto.v1.ShardHoldings;
import io.lightmesh.proto.v1.UnloadExpertsRequest;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.lightmesh.proto.v1.WorkerKind;
import io.lightmesh.proto.v1.WorkerLoad;

import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;
import java.util.logging.Logger;

/**
 * An expert shard: hosts a changing set of (layer, expert) pairs, at most {@code slotCapacity} of them, and
 * computes batched expert calls, {@code sum_k w_k * expert_k(x)} over the slots it is given (-1 slots skipped).
 *
 * <p>Pairs are loaded and unloaded on command ({@link #load}, {@link #unload}; the Expert service's LoadExperts and
 * UnloadExperts). A batch enters each pair it names (an in-flight count per pair) and then checks the pair is live;
 * an unload first takes the pair out of the live set, then waits for its in-flight count to reach zero before it
 * drops the weights. So a batch either sees the pair live and computes with its weights, or is refused whole
 * (INVALID_ARGUMENT, naming the pairs not held), never half-computed. Loads and unloads run one at a time.
 *
 * <p>Every computed (token, expert) slot counts towards its pair's token counter; compute time is summed. Both are
 * cumulative and reported by Worker.Describe ({@link ExpertShardInfo}) for the placement controller.
 */
public final class ExpertShard {
    private static final Logger LOG = Logger.getLogger(ExpertShard.class.getName());
    /** How long an unload waits by default for the batches in flight on its pairs. */
    public static final long DEFAULT_DRAIN_MS = 10_000;

    private final String id, address;
    private final MeshModel model;
    private final int numLayers, numExperts, hidden;
    private final int slotCapacity;
    private final long expertBytes;
    /** The held pairs on the host's arrays (a non-resident OpenCL backend packs them at preload); null on the device path. */
    private final LocalExperts experts;
    /** The held pairs on the device (one upload per pair at load, freed at unload; one grouped product per chosen
     *  expert) when the backend has a device and lightmesh.device.experts is not false; null: host arrays. So a
     *  shard's device memory for weights is its slots times one copy's bytes: the slot capacity bounds it. */
    private final DeviceExperts device;
    /** [layer * E + expert]: 1 while the pair accepts batches. */
    private final AtomicIntegerArray live;
    /** [layer * E + expert]: batches computing on the pair now. */
    private final AtomicIntegerArray inFlight;
    /** [layer * E + expert]: unloaded while batches were still on it; its weights are dropped by the last of them. */
    private final AtomicIntegerArray releaseWhenIdle;
    /** [layer * E + expert]: (token, expert) slots computed. */
    private final AtomicLongArray tokens;
    private final LongAdder batches = new LongAdder(), computeUs = new LongAdder(), tokensComputed = new LongAdder();
    private final AtomicInteger batchesInFlight = new AtomicInteger();
    private final AtomicLong placementVersion = new AtomicLong();
    /** The placement controllers that described this shard lately (their heartbeats), reported back in Describe. */
    private final io.lightmesh.mesh.ControllerSightings controllers = new io.lightmesh.mesh.ControllerSightings();
    private final Object changes = new Object(); // loads and unloads, one at a time
    private final ExecutorService admin; // load/unload off the gRPC transport threads (they block)
    /** Batches off the gRPC transport threads (under Quarkus and Grpc.serve(direct) the Netty event loop, which must
     *  stay free to answer keepalive PINGs: a batch computed there longer than the callers' keepalive bound got the
     *  shard declared dead). One thread per core; a full queue refuses a batch (RESOURCE_EXHAUSTED), never blocks. */
    private final java.util.concurrent.ThreadPoolExecutor computePool;
    /** With the priority gate on: decode batches' own pool, so they reach the gate without queueing behind prefill
     *  batches in {@link #computePool}'s FIFO queue (the gate orders the two); null when off. */
    private final java.util.concurrent.ThreadPoolExecutor decodePool;
    /** Decode batches ahead of prefill batches at the device ({@code lightmesh.shard.priority}); null: arrival order. */
    private final PriorityGate gate;
    /** A decode batch that finds the gate free is computed on the transport thread that read it (no hand-off to a pool
     *  thread and back for the answer's write): {@code lightmesh.shard.inlineDecode}, with the gate on. */
    private final boolean inlineDecode;
    private final LongAdder inlined = new LongAdder(), decodeGateNanos = new LongAdder(), prefillGateNanos = new LongAdder();
    /** Test seam: runs in every batch's compute once it counts as in flight, on the thread computing it (a deliberately slow batch). */
    volatile java.util.function.Consumer<ExpertBatch> beforeCompute;
    /** Test seam: runs with the device's turn held (the priority gate's permit), just before the experts compute. */
    volatile java.util.function.Consumer<ExpertBatch> atDevice;
    private final Tracer tracer;
    /** lightmesh.expert.tokens: {@link #tokens} per (layer, expert) as an OTel counter (the expert load on /q/metrics). */
    private final io.opentelemetry.api.metrics.ObservableLongCounter tokenMetric;

    public ExpertShard(ExpertPlacement.Shard shard, MeshModel model) {
        this(shard, model, OpenTelemetry.noop());
    }

    /** @param otel a span "lightmesh.expert compute" per batch, child of the caller's span (metadata or the batch's traceparent) */
    public ExpertShard(ExpertPlacement.Shard shard, MeshModel model, OpenTelemetry otel) {
        this(shard, model, otel, Integer.MAX_VALUE);
    }

    /**
     * @param shard        id, address and the pairs held at start
     * @param slotCapacity expert copies this shard may hold (capped at layers x experts: every pair)
     * @throws IllegalArgumentException when the initial pairs exceed the capacity
     */
    public ExpertShard(ExpertPlacement.Shard shard, MeshModel model, OpenTelemetry otel, int slotCapacity) {
        this(shard, model, otel, slotCapacity, Runtime.getRuntime().availableProcessors(), 64 * Runtime.getRuntime().availableProcessors());
    }

    /**
     * @param computeThreads batches computed at once (the shard's compute parallelism)
     * @param computeQueue   batches waiting for a compute thread at most; one more is refused with RESOURCE_EXHAUSTED
     */
    ExpertShard(ExpertPlacement.Shard shard, MeshModel model, OpenTelemetry otel, int slotCapacity, int computeThreads, int computeQueue) {
        this(shard, model, otel, slotCapacity, computeThreads, computeQueue, Boolean.getBoolean("lightmesh.shard.priority") ? 0 : -1,
                Long.getLong("lightmesh.shard.prefillMaxWaitMs", PREFILL_MAX_WAIT_MS), Boolean.getBoolean("lightmesh.shard.inlineDecode"));
    }

    /** The default of {@code lightmesh.shard.prefillMaxWaitMs}: how long decode batches may overtake a waiting prefill batch. */
    public static final long PREFILL_MAX_WAIT_MS = 20;

    /**
     * @param gatePermits  the priority gate's permits: -1 off (arrival order), 0 the default (1 on the device path,
     *                     whose calls run one at a time anyway; {@code computeThreads} on host arrays), else that many
     * @param prefillMaxWaitMs how long decode batches may overtake a waiting prefill batch at the gate
     * @param inlineDecode compute a decode batch that finds the gate free on the transport thread (gate on only)
     */
    ExpertShard(ExpertPlacement.Shard shard, MeshModel model, OpenTelemetry otel, int slotCapacity, int computeThreads, int computeQueue,
                int gatePermits, long prefillMaxWaitMs, boolean inlineDecode) {
        this.tracer = otel.getTracer(MeshTelemetry.SCOPE);
        this.id = shard.id();
        this.address = shard.address();
        this.model = model;
        this.numLayers = model.config().numLayers();
        this.numExperts = model.config().numExperts();
        this.hidden = model.config().hiddenSize();
        this.slotCapacity = (int) Math.min(slotCapacity, (long) numLayers * numExperts);
        if (this.slotCapacity < 0) throw new IllegalArgumentException("negative expert slot capacity " + slotCapacity);
        int[] initial = shard.pairs(numLayers, numExperts);
        if (initial.length > this.slotCapacity) {
            throw new IllegalArgumentException("shard " + id + " starts with " + initial.length + " expert copies but has " + this.slotCapacity + " slots");
        }
        int n = numLayers * numExperts;
        live = new AtomicIntegerArray(n);
        inFlight = new AtomicIntegerArray(n);
        releaseWhenIdle = new AtomicIntegerArray(n);
        tokens = new AtomicLongArray(n);
        for (int p : initial) live.set(p, 1);
        var ops = model.model().ops();
        boolean onDevice = ops.resident() != null && !"false".equalsIgnoreCase(System.getProperty("lightmesh.device.experts", "true"));
        // one of the two holds the weights, never both (each would upload its own copy to a device)
        // device: a pair stays placed while live or while batches that entered it still compute (release() frees it)
        this.device = onDevice ? new DeviceExperts(model.config(), model.model().weights(), ops.resident(),
                (l, e) -> live.get(l * numExperts + e) == 1 || inFlight.get(l * numExperts + e) > 0) : null;
        this.experts = onDevice ? null : new LocalExperts(model.config(), model.model().weights(), ops, shard::holds);
        this.expertBytes = expertBytes(model);
        this.admin = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "expert-shard-" + id + "-placement");
            t.setDaemon(true);
            return t;
        });
        AtomicInteger computeThreadIds = new AtomicInteger();
        this.computePool = new java.util.concurrent.ThreadPoolExecutor(computeThreads, computeThreads, 0, java.util.concurrent.TimeUnit.MILLISECONDS,
                new java.util.concurrent.ArrayBlockingQueue<>(computeQueue), r -> {
            Thread t = new Thread(r, "expert-shard-" + id + "-compute-" + computeThreadIds.incrementAndGet());
            t.setDaemon(true);
            return t;
        }, new java.util.concurrent.ThreadPoolExecutor.AbortPolicy());
        if (gatePermits >= 0) {
            int permits = gatePermits > 0 ? gatePermits : device != null ? 1 : computeThreads;
            this.gate = new PriorityGate(permits, prefillMaxWaitMs * 1_000_000);
            AtomicInteger decodeThreadIds = new AtomicInteger();
            this.decodePool = new java.util.concurrent.ThreadPoolExecutor(computeThreads, computeThreads, 0, java.util.concurrent.TimeUnit.MILLISECONDS,
                    new java.util.concurrent.ArrayBlockingQueue<>(computeQueue), r -> {
                Thread t = new Thread(r, "expert-shard-" + id + "-decode-" + decodeThreadIds.incrementAndGet());
                t.setDaemon(true);
                return t;
            }, new java.util.concurrent.ThreadPoolExecutor.AbortPolicy());
        } else {
            this.gate = null;
            this.decodePool = null;
        }
        this.inlineDecode = inlineDecode && gate != null;
        io.lightmesh.mesh.WorkerPath.announceShard(id, compute(), model.model(), otel);
        LOG.info("expert shard " + id + ": gRPC over " + io.lightmesh.mesh.Grpc.transport() + "; " + (gate == null ? "batches in arrival order (-Dlightmesh.shard.priority=false)"
                : "decode batches ahead of prefill at the device (-Dlightmesh.shard.priority=true, " + gate.permits() + " at a time, prefill overtaken for at most "
                + gate.maxPrefillWait(java.util.concurrent.TimeUnit.MILLISECONDS) + " ms)" + (this.inlineDecode ? ", a decode batch finding the device free computed on the transport thread (-Dlightmesh.shard.inlineDecode)" : "")));
        if (device != null) LOG.info("expert shard " + id + ": batches of up to " + device.smallSlots()
                + " slots on the matrix-vector MoE kernels, larger ones grouped (-Dlightmesh.shard.smallBatch)");
        this.tokenMetric = tokenMetric(otel);
    }

    /**
     * The per-(layer, expert) token counts as a cumulative counter with attributes lightmesh.layer, lightmesh.expert
     * and lightmesh.shard, for Prometheus (lightmesh_expert_tokens_total) and an autoscaler reading expert load. Only
     * pairs that computed a token are reported: a pair never used has no series.
     */
    private io.opentelemetry.api.metrics.ObservableLongCounter tokenMetric(OpenTelemetry otel) {
        var layer = io.opentelemetry.api.common.AttributeKey.longKey("lightmesh.layer");
        var expert = io.opentelemetry.api.common.AttributeKey.longKey("lightmesh.expert");
        var shard = io.opentelemetry.api.common.AttributeKey.stringKey("lightmesh.shard");
        io.opentelemetry.api.common.Attributes[] attributes = new io.opentelemetry.api.common.Attributes[tokens.length()];
        return otel.getMeter(MeshTelemetry.SCOPE).counterBuilder("lightmesh.expert.tokens").setUnit("{token}")
                .setDescription("Tokens this shard computed for each (layer, expert) (a token counts once per chosen expert)")
                .buildWithCallback(m -> {
                    for (int p = 0; p < tokens.length(); p++) {
                        long v = tokens.get(p);
                        if (v == 0) continue;
                        if (attributes[p] == null) {
                            attributes[p] = io.opentelemetry.api.common.Attributes.of(layer, (long) (p / numExperts), expert, (long) (p % numExperts), shard, id);
                        }
                        m.record(v, attributes[p]);
                    }
                });
    }

    /**
     * Bytes of one expert copy (w1, w2, w3) where this model's backend keeps it: on an OpenCL backend (the device
     * path, or Aparapi's packed slabs) as the device holds it ({@link ResidentOps#weightElementBytes}: f16 is widened
     * to fp32 there, so an f16 copy takes twice its checkpoint size), on a host backend as stored in the checkpoint
     * (the mapped file). The unit of the memory budget ({@link #slotCapacity}) and of ExpertShardInfo.expert_bytes.
     */
    public static long expertBytes(MeshModel model) {
        long h = model.config().hiddenSize(), I = model.config().intermediateSize();
        String p = "model.layers.0.block_sparse_moe.experts.0.w1.weight";
        io.lightmesh.engine.tensor.DType stored = model.model().weights().get(p, I, h).dtype();
        int bytes = model.model().ops() instanceof OpenClOps ? ResidentOps.weightElementBytes(stored) : stored.bytes();
        return 3 * h * I * bytes;
    }

    /**
     * Expert copies a shard may hold: {@code slots} when given, the memory budget over one copy's bytes when given,
     * the smaller of the two when both are, every pair when neither is.
     */
    public static int slotCapacity(MeshModel model, java.util.OptionalInt slots, java.util.OptionalLong memoryBytes) {
        long cap = (long) model.config().numLayers() * model.config().numExperts();
        if (slots.isPresent()) cap = Math.min(cap, slots.getAsInt());
        if (memoryBytes.isPresent()) cap = Math.min(cap, memoryBytes.getAsLong() / expertBytes(model));
        return (int) Math.max(0, cap);
    }

    public String id() { return id; }
    public String address() { return address; }
    public int slotCapacity() { return slotCapacity; }

    /** How this shard computes its experts: "device-grouped" (weights on the device) or "host-arrays". */
    public String compute() { return device != null ? "device-grouped" : "host-arrays"; }

    /**
     * On the device path, how many batches took the matrix-vector MoE kernels (small: up to
     * {@code -Dlightmesh.shard.smallBatch} slots) and how many the grouped products; null on host arrays.
     */
    public DeviceExperts.Paths devicePaths() { return device != null ? device.paths() : null; }

    /**
     * The priority gate's figures (null when off): decode batches admitted ahead of a waiting prefill batch, prefill
     * batches admitted by age, microseconds decode and prefill batches waited for the device in all, and decode batches
     * computed on the transport thread ({@code lightmesh.shard.inlineDecode}).
     */
    public record GateStats(PriorityGate.Stats gate, double decodeWaitUs, double prefillWaitUs, long inlined) {}

    public GateStats gateStats() {
        if (gate == null) return null;
        return new GateStats(gate.stats(), decodeGateNanos.sum() / 1e3, prefillGateNanos.sum() / 1e3, inlined.sum());
    }

    /**
     * This shard's Expert and Worker services on a gRPC server at host:port (0: any free port), handlers on the
     * transport thread (a batch goes to the compute pool from there): on the process's shared event loop, or, with
     * {@code lightmesh.shard.inlineDecode} (decode batches computed on that thread), on a loop of its own
     * ({@link io.lightmesh.mesh.Grpc#serveOnOwnLoop}) so that a batch computing there holds up no other server or channel.
     */
    public io.grpc.Server serve(String host, int port) throws java.io.IOException {
        return inlineDecode ? io.lightmesh.mesh.Grpc.serveOnOwnLoop(host, port, services(), "expert-shard-" + id)
                : io.lightmesh.mesh.Grpc.serve(host, port, services(), true);
    }

    public List<BindableService> services() { return List.of(new ExpertService(), new WorkerService()); }

    // ---- holdings ----

    /** Whether (layer, expert) is held (accepts batches) now. */
    public boolean holds(int layer, int expert) {
        return layer >= 0 && layer < numLayers && expert >= 0 && expert < numExperts && live.get(layer * numExperts + expert) == 1;
    }

    /** Pairs held now. */
    public int slotsUsed() {
        int c = 0;
        for (int i = 0; i < live.length(); i++) c += live.get(i);
        return c;
    }

    /** The pairs held now, per layer (ascending), experts ascending. */
    public Map<Integer, int[]> holdings() {
        TreeMap<Integer, int[]> m = new TreeMap<>();
        for (int l = 0; l < numLayers; l++) {
            List<Integer> es = new ArrayList<>();
            for (int e = 0; e < numExperts; e++) if (live.get(l * numExperts + e) == 1) es.add(e);
            if (!es.isEmpty()) m.put(l, es.stream().mapToInt(Integer::intValue).toArray());
        }
        return m;
    }

    /** This shard as a placement entry (explicit form). */
    public ExpertPlacement.Shard placementShard() { return ExpertPlacement.Shard.of(id, address, holdings()); }

    /**
     * Loads these pairs (mapped from the checkpoint; on the device path uploaded now, once); all or nothing.
     * Pairs already held cost nothing.
     *
     * @throws IllegalArgumentException a layer or expert out of range, or nothing asked
     * @throws SlotsExhaustedException  the new pairs do not fit the free slots
     */
    public ShardHoldings load(Map<Integer, int[]> pairs, long version) {
        synchronized (changes) {
            int[] ps = validate(pairs);
            seen(version);
            List<Integer> fresh = new ArrayList<>();
            for (int p : ps) if (live.get(p) == 0) fresh.add(p);
            int used = slotsUsed();
            if (used + fresh.size() > slotCapacity) {
                throw new SlotsExhaustedException("shard " + id + " has " + (slotCapacity - used) + " free expert slots of " + slotCapacity
                        + "; loading needs " + fresh.size());
            }
            for (int p : fresh) {
                int l = p / numExperts, e = p % numExperts;
                releaseWhenIdle.set(p, 0); // a pair unloaded but still draining keeps its weights: make it live again
                if (device != null) device.place(l, e); // uploaded now, off the batches' path; no-op when still there
                else experts.load(l, e);                // no-op when the weights are still there
                live.set(p, 1);          // publishes the weights to the batches that see the pair live
            }
            if (!fresh.isEmpty()) LOG.info("expert shard " + id + ": loaded " + fresh.size() + " expert copies (" + slotsUsed() + "/" + slotCapacity + " slots)");
            return holdingsProto();
        }
    }

    /**
     * Unloads these pairs: refused by batches from now on; their weights are dropped once the batches already on
     * them finish, waited for up to {@code drainMs} (after that the last of those batches drops them).
     *
     * @throws IllegalArgumentException a layer or expert out of range, or nothing asked
     */
    public ShardHoldings unload(Map<Integer, int[]> pairs, long version, long drainMs) throws InterruptedException {
        synchronized (changes) {
            int[] ps = validate(pairs);
            seen(version);
            List<Integer> gone = new ArrayList<>();
            for (int p : ps) if (live.compareAndSet(p, 1, 0)) gone.add(p);
            long until = System.nanoTime() + Math.max(0, drainMs) * 1_000_000;
            for (int p : gone) {
                while (inFlight.get(p) > 0 && System.nanoTime() < until) Thread.sleep(1);
                releaseWhenIdle.set(p, 1);
                if (inFlight.get(p) == 0) release(p); // else the last batch on it releases it
            }
            if (!gone.isEmpty()) LOG.info("expert shard " + id + ": unloaded " + gone.size() + " expert copies (" + slotsUsed() + "/" + slotCapacity + " slots)");
            return holdingsProto();
        }
    }

    /** Drops the weights of a pair no longer live and idle, once (whoever gets here first). */
    private void release(int p) {
        if (live.get(p) == 1 || !releaseWhenIdle.compareAndSet(p, 1, 0)) return;
        if (device != null) {
            device.release(p / numExperts, p % numExperts); // its device buffers freed
            return;
        }
        List<Tensor> dropped = experts.unload(p / numExperts, p % numExperts);
        // Aparapi's products pack weights at preload and can drop them; host backends read the mapped file
        if (!dropped.isEmpty() && model.model().ops() instanceof OpenClOps cl) cl.evict(dropped);
    }

    /** Thrown when a load does not fit the shard's free slots (RESOURCE_EXHAUSTED). */
    public static final class SlotsExhaustedException extends RuntimeException {
        public SlotsExhaustedException(String m) { super(m); }
    }

    /** Thrown when a batch names pairs this shard does not hold (INVALID_ARGUMENT); lists them. */
    public static final class NotHeldException extends IllegalArgumentException {
        private final Map<Integer, int[]> pairs;

        NotHeldException(String m, Map<Integer, int[]> pairs) {
            super(m);
            this.pairs = pairs;
        }

        public Map<Integer, int[]> pairs() { return pairs; }
    }

    private int[] validate(Map<Integer, int[]> pairs) {
        List<Integer> ps = new ArrayList<>();
        for (Map.Entry<Integer, int[]> en : pairs.entrySet()) {
            int l = en.getKey();
            if (l < 0 || l >= numLayers) throw new IllegalArgumentException("layer " + l + " out of range [0, " + numLayers + ")");
            for (int e : en.getValue()) {
                if (e < 0 || e >= numExperts) throw new IllegalArgumentException("expert " + e + " of layer " + l + " out of range [0, " + numExperts + ")");
                ps.add(l * numExperts + e);
            }
        }
        if (ps.isEmpty()) throw new IllegalArgumentException("no (layer, expert) pairs given");
        return ps.stream().mapToInt(Integer::intValue).distinct().toArray();
    }

    private void seen(long version) {
        if (version > 0) placementVersion.accumulateAndGet(version, Math::max);
    }

    private ShardHoldings holdingsProto() {
        return ShardHoldings.newBuilder().setShardId(id).addAllExperts(ExpertPlacement.layerExperts(holdings()))
                .setSlotCapacity(slotCapacity).setSlotsUsed(slotsUsed()).setPlacementVersion(placementVersion.get()).build();
    }

    // ---- compute ----

    /** Computes one batch in a span whose parent is {@code parent} (the caller's). */
    public ExpertResult compute(ExpertBatch b, Context parent) { return compute(b, parent, false); }

    /** As above; {@code gateHeld}: the caller took the gate's permit for this batch (released here). */
    private ExpertResult compute(ExpertBatch b, Context parent, boolean gateHeld) {
        Span span = tracer.spanBuilder("lightmesh.expert compute").setSpanKind(SpanKind.SERVER).setParent(parent)
                .setAttribute("lightmesh.shard", id).setAttribute("lightmesh.layer", b.getLayer())
                .setAttribute("lightmesh.tokens", b.getNumTokens()).startSpan();
        try {
            return compute(b, gateHeld);
        } catch (RuntimeException e) {
            span.setStatus(StatusCode.ERROR, e.toString());
            throw e;
        } finally {
            span.end();
        }
    }

    /**
     * One batch. Each non-skipped (token, expert) slot becomes one row of a top-1 call of {@link LocalExperts} (a
     * skipped slot costs nothing), and each token's rows are added in ascending expert order, as the in-process
     * experts add them: the answer's bits do not depend on which slots of a token this shard was given. Rows come
     * and the answer goes in the batch's element type: F32 (UNSPECIFIED read as F32), or BF16 (rows widened to fp32,
     * computed in fp32, the answer rounded to bf16).
     *
     * @throws NotHeldException         a slot names a pair this shard does not hold
     * @throws IllegalArgumentException the batch is malformed
     */
    public ExpertResult compute(ExpertBatch b) { return compute(b, false); }

    /** Whether a batch is a decode step's: ahead of prefill batches at the gate. */
    static boolean urgent(ExpertBatch b) { return b.getCallClass() == io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE; }

    /**
     * @param gateHeld the caller holds the gate's permit for this batch: released here, however the batch ends; else,
     *                 with the gate on, the batch takes a permit for its device work (the test seam included)
     */
    private ExpertResult compute(ExpertBatch b, boolean gateHeld) {
        boolean holding = gateHeld;
        try {
            long t0 = System.nanoTime();
            int h = hidden, n = b.getNumTokens(), k = b.getTopK(), layer = b.getLayer();
            ActivationDType dtype = WireRows.normalize(b.getDtype()); // the answer comes in the batch's element type
            if (layer < 0 || layer >= numLayers) throw new IllegalArgumentException("layer " + layer + " out of range");
            if (n < 0 || k <= 0) throw new IllegalArgumentException("num_tokens " + n + ", top_k " + k);
            if (b.getExpertsCount() != n * k || b.getWeightsCount() != n * k) {
                throw new IllegalArgumentException("experts/weights must have num_tokens * top_k = " + n * k + " entries");
            }
            int eb = WireRows.elementBytes(dtype);
            if (b.getHidden().size() != (long) n * h * eb) {
                throw new IllegalArgumentException("hidden has " + b.getHidden().size() + " bytes, not num_tokens * hidden_size * " + eb + " = " + (long) n * h * eb);
            }
            seen(b.getPlacementVersion());
            // the distinct pairs named, entered before checking they are live (see the class comment)
            int[] named = new int[numExperts];
            int distinct = 0, slots = 0;
            for (int i = 0; i < n * k; i++) {
                int e = b.getExperts(i);
                if (e < -1 || e >= numExperts) throw new IllegalArgumentException("expert " + e + " out of range [0, " + numExperts + ")");
                if (e < 0) continue;
                slots++;
                boolean seen = false;
                for (int j = 0; j < distinct && !seen; j++) seen = named[j] == e;
                if (!seen) named[distinct++] = e;
            }
            for (int j = 0; j < distinct; j++) inFlight.incrementAndGet(layer * numExperts + named[j]);
            batchesInFlight.incrementAndGet();
            try {
                var hook = beforeCompute;
                if (hook != null) hook.accept(b);
                List<Integer> notHeld = new ArrayList<>();
                for (int j = 0; j < distinct; j++) if (live.get(layer * numExperts + named[j]) == 0) notHeld.add(named[j]);
                if (!notHeld.isEmpty()) {
                    int[] ne = notHeld.stream().mapToInt(Integer::intValue).sorted().toArray();
                    throw new NotHeldException("experts " + Arrays.toString(ne) + " of layer " + layer + " are not on shard " + id, Map.of(layer, ne));
                }
                float[] out = new float[n * h];
                long waited = 0;
                if (slots > 0) {
                    holding = false; // computeSlots releases a permit held for it
                    waited = computeSlots(b, dtype, layer, n, k, slots, out, gateHeld);
                }
                ByteString combined = WireRows.encode(out, n * h, dtype);
                batches.increment();
                long us = (System.nanoTime() - t0 - waited) / 1000; // compute_us: not the wait for the device's turn
                computeUs.add(us);
                tokensComputed.add(slots);
                return ExpertResult.newBuilder().setCallId(b.getCallId()).setLayer(layer).setNumTokens(n)
                        .setDtype(dtype).setCombined(combined).setComputeUs(us).build();
            } finally {
                batchesInFlight.decrementAndGet();
                for (int j = 0; j < distinct; j++) {
                    int p = layer * numExperts + named[j];
                    if (inFlight.decrementAndGet(p) == 0 && releaseWhenIdle.get(p) == 1) release(p);
                }
            }
        } finally {
            if (holding) gate.release(); // a permit taken for it that computeSlots did not get (refused, nothing to compute)
        }
    }

    /**
     * The non-skipped slots as top-1 rows, then each token's rows summed in ascending expert order into out. With the
     * priority gate on, only the experts' computation holds the device's turn (the rows are gathered before, summed
     * after): a permit already held ({@code gateHeld}) is released here, else one is taken for it.
     *
     * @return nanoseconds waited for the device's turn
     */
    private long computeSlots(ExpertBatch b, ActivationDType dtype, int layer, int n, int k, int slots, float[] out, boolean gateHeld) {
        int h = hidden;
        long waited = 0;
        boolean holding = gateHeld;
        float[] rows = new float[slots * h];
        int[] token = new int[slots];
        try {
            WireRows.Reader x = WireRows.reader(b.getHidden(), dtype); // each slot's row read straight from the message
            float[] xs = new float[slots * h], w = new float[slots];
            int[] ex = new int[slots];
            int[] order = new int[k];
            int r = 0;
            for (int t = 0; t < n; t++) {
                int c = 0;
                for (int j = 0; j < k; j++) if (b.getExperts(t * k + j) >= 0) order[c++] = t * k + j;
                // ascending expert id (insertion sort of at most top_k slots)
                for (int i = 1; i < c; i++) {
                    int v = order[i], ev = b.getExperts(v), m = i - 1;
                    while (m >= 0 && b.getExperts(order[m]) > ev) { order[m + 1] = order[m]; m--; }
                    order[m + 1] = v;
                }
                for (int i = 0; i < c; i++) {
                    int s = order[i];
                    ex[r] = b.getExperts(s);
                    w[r] = b.getWeights(s);
                    token[r] = t;
                    x.row(t, h, xs, r * h);
                    tokens.incrementAndGet(layer * numExperts + ex[r]);
                    r++;
                }
            }
            if (gate != null && !holding) { // the device's turn for the experts alone: rows gathered before, summed after
                long w0 = System.nanoTime();
                try {
                    gate.acquire(urgent(b));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException("expert shard " + id + " interrupted waiting for its device (closing)");
                }
                holding = true;
                waited = System.nanoTime() - w0;
                (urgent(b) ? decodeGateNanos : prefillGateNanos).add(waited);
            }
            var seam = atDevice;
            if (seam != null) seam.accept(b);
            if (device != null) device.run(layer, xs, slots, 1, ex, w, rows);
            else experts.run(layer, xs, slots, 1, ex, w, rows);
        } finally {
            if (holding) gate.release();
        }
        for (int i = 0; i < slots; i++) {
            int o = token[i] * h, p = i * h;
            for (int c = 0; c < h; c++) out[o + c] += rows[p + c];
        }
        return waited;
    }

    // ---- Describe ----

    /** What the placement controller reads: holdings, capacity, cumulative load. */
    public ExpertShardInfo info() {
        ExpertShardInfo.Builder b = ExpertShardInfo.newBuilder().addAllHeld(ExpertPlacement.layerExperts(holdings()))
                .setSlotCapacity(slotCapacity).setSlotsUsed(slotsUsed()).setExpertBytes(expertBytes)
                .setNumLayers(numLayers).setNumExperts(numExperts).setComputeUs(computeUs.sum()).setTokensComputed(tokensComputed.sum())
                .setPlacementVersion(placementVersion.get()).setBatchesInFlight(batchesInFlight.get())
                .addAllControllers(controllers.report());
        for (int i = 0; i < tokens.length(); i++) b.addTokens(tokens.get(i));
        return b.build();
    }

    /** The holdings in the first version's form (a product of layers and experts) when they are one; null otherwise. */
    ExpertAssignment productForm() {
        Map<Integer, int[]> held = holdings();
        if (held.isEmpty()) return null;
        int[] first = held.values().iterator().next();
        for (int[] es : held.values()) if (!Arrays.equals(es, first)) return null;
        ExpertAssignment.Builder a = ExpertAssignment.newBuilder();
        if (held.size() < numLayers) held.keySet().forEach(a::addLayers);
        if (first.length < numExperts) for (int e : first) a.addExperts(e);
        return a.build();
    }

    public WorkerInfo describe() {
        WorkerInfo.Builder w = WorkerInfo.newBuilder().setWorkerId(id).setKind(WorkerKind.WORKER_KIND_EXPERT).setAddress(address)
                .setModelFingerprint(model.fingerprint()).setExpertShard(info()).setExpertCompute(compute())
                .setBackend(io.lightmesh.engine.backend.Backends.describe(model.model().ops()))
                .setLoad(WorkerLoad.newBuilder().setBatchesServed(batches.sum()));
        ExpertAssignment a = productForm();
        if (a != null) w.setExperts(a);
        return w.build();
    }

    /** Stops the placement and compute threads and frees the device buffers; call after the server stopped. */
    public void close() {
        admin.shutdownNow();
        computePool.shutdownNow();
        if (decodePool != null) decodePool.shutdownNow();
        tokenMetric.close();
        if (device != null) device.close(); // the held pairs' device buffers and the scratch
    }

    // ---- gRPC ----

    private static io.grpc.StatusRuntimeException status(RuntimeException e) {
        Status s = e instanceof SlotsExhaustedException ? Status.RESOURCE_EXHAUSTED
                : e instanceof IllegalArgumentException ? Status.INVALID_ARGUMENT : Status.INTERNAL;
        return s.withDescription(e.getMessage()).asRuntimeException();
    }

    final class ExpertService extends ExpertGrpc.ExpertImplBase {
        @Override
        public void compute(ExpertBatch b, StreamObserver<ExpertResult> out) {
            Context parent = Context.current(); // the caller's context, from the call's metadata (set on this thread)
            try {
                poolFor(b).execute(() -> {
                    ExpertResult r;
                    try {
                        r = ExpertShard.this.compute(b, parent);
                    } catch (IllegalArgumentException e) {
                        out.onError(status(e));
                        return;
                    } catch (RuntimeException e) { // what gRPC answered for an exception thrown by the handler
                        out.onError(Status.UNKNOWN.withDescription(e.toString()).withCause(e).asRuntimeException());
                        return;
                    }
                    out.onNext(r);
                    out.onCompleted();
                });
            } catch (java.util.concurrent.RejectedExecutionException e) {
                out.onError(refused(b).asRuntimeException());
            }
        }

        /** Decode batches on their own pool when the gate orders them (they must not queue behind prefill batches). */
        private java.util.concurrent.ThreadPoolExecutor poolFor(ExpertBatch b) {
            return decodePool != null && urgent(b) ? decodePool : computePool;
        }

        /** Why a batch found no room on the compute pool: closing, or the queue full. */
        private Status refused(ExpertBatch b) {
            var pool = poolFor(b);
            return pool.isShutdown() ? Status.UNAVAILABLE.withDescription("expert shard " + id + " is closing")
                    : Status.RESOURCE_EXHAUSTED.withDescription("expert shard " + id + " has " + pool.getQueue().size()
                            + " batches waiting for its " + pool.getMaximumPoolSize() + " compute threads; batch " + b.getCallId() + " refused");
        }

        @Override
        public StreamObserver<ExpertBatch> computeStream(StreamObserver<ExpertResult> out) {
            // Batches are computed on the pool, several of one stream at once, and answered as each finishes: results
            // may overtake each other (callers match them by call_id). The stream completes once the caller half-closed
            // and every batch it sent was answered. All of this state is guarded by out.
            return new StreamObserver<>() {
                int computing;
                boolean halfClosed, ended;

                @Override public void onNext(ExpertBatch b) {
                    // one long-lived stream carries many requests' batches: each names its own trace; a refused batch is
                    // answered in band, so the others on the stream go on
                    Context parent = b.getTraceparent().isEmpty() ? Context.current() : MeshTelemetry.fromTraceparent(b.getTraceparent());
                    synchronized (out) { computing++; }
                    if (inlineDecode && urgent(b) && gate.tryAcquire()) { // the device is free: no hand-off either way
                        inlined.increment();
                        answer(computeInBand(b, parent, true));
                        return;
                    }
                    try {
                        poolFor(b).execute(() -> answer(computeInBand(b, parent, false)));
                    } catch (java.util.concurrent.RejectedExecutionException e) {
                        Status s = refused(b);
                        answer(ExpertResult.newBuilder().setCallId(b.getCallId()).setLayer(b.getLayer())
                                .setError(BatchError.newBuilder().setCode(s.getCode().value()).setMessage(s.getDescription())).build());
                    }
                }

                private void answer(ExpertResult r) {
                    synchronized (out) {
                        computing--;
                        if (ended) return; // the caller went away
                        try {
                            out.onNext(r);
                            if (halfClosed && computing == 0) { ended = true; out.onCompleted(); }
                        } catch (RuntimeException e) { // cancelled meanwhile: nobody to answer
                            ended = true;
                        }
                    }
                }

                @Override public void onError(Throwable t) { synchronized (out) { ended = true; } }
                @Override public void onCompleted() {
                    synchronized (out) {
                        halfClosed = true;
                        if (computing == 0 && !ended) { ended = true; out.onCompleted(); }
                    }
                }
            };
        }

        /** One batch of a stream: its result, or its refusal as a BatchError (the stream goes on). */
        private ExpertResult computeInBand(ExpertBatch b, Context parent, boolean gateHeld) {
            try {
                return ExpertShard.this.compute(b, parent, gateHeld);
            } catch (RuntimeException e) {
                boolean invalid = e instanceof IllegalArgumentException;
                BatchError.Builder err = BatchError.newBuilder().setCode((invalid ? Status.Code.INVALID_ARGUMENT : Status.Code.INTERNAL).value())
                        .setMessage(invalid ? String.valueOf(e.getMessage()) : e.toString());
                if (e instanceof NotHeldException nh) err.addAllNotHeld(ExpertPlacement.layerExperts(nh.pairs()));
                return ExpertResult.newBuilder().setCallId(b.getCallId()).setLayer(b.getLayer()).setError(err).build();
            }
        }

        @Override
        public void getPlacement(PlacementRequest req, StreamObserver<PlacementMap> out) {
            out.onNext(new ExpertPlacement(numLayers, numExperts, List.of(placementShard()), placementVersion.get()).toProto());
            out.onCompleted();
        }

        @Override
        public void loadExperts(LoadExpertsRequest req, StreamObserver<ShardHoldings> out) {
            change(out, () -> load(ExpertPlacement.fromLayerExperts(req.getExpertsList()), req.getPlacementVersion()));
        }

        @Override
        public void unloadExperts(UnloadExpertsRequest req, StreamObserver<ShardHoldings> out) {
            long drain = req.getDrainTimeoutMs() > 0 ? req.getDrainTimeoutMs() : DEFAULT_DRAIN_MS;
            change(out, () -> unload(ExpertPlacement.fromLayerExperts(req.getExpertsList()), req.getPlacementVersion(), drain));
        }

        /** A load or unload on the placement thread: they block (mapping, uploading, draining), transport threads must not. */
        private void change(StreamObserver<ShardHoldings> out, java.util.concurrent.Callable<ShardHoldings> work) {
            try {
                admin.execute(() -> {
                    try {
                        out.onNext(work.call());
                        out.onCompleted();
                    } catch (RuntimeException e) {
                        out.onError(status(e));
                    } catch (Exception e) {
                        out.onError(Status.INTERNAL.withDescription(e.toString()).asRuntimeException());
                    }
                });
            } catch (java.util.concurrent.RejectedExecutionException e) {
                out.onError(Status.UNAVAILABLE.withDescription("expert shard " + id + " is closing").asRuntimeException());
            }
        }
    }

    final class WorkerService extends WorkerGrpc.WorkerImplBase {
        @Override
        public void describe(DescribeRequest req, StreamObserver<WorkerInfo> out) {
            if (req.hasController()) controllers.heard(req.getController());
            out.onNext(ExpertShard.this.describe());
            out.onCompleted();
        }
    }
}
