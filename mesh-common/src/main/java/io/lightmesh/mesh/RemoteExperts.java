package io.lightmesh.mesh;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.model.ExpertExecutor;
import io.lightmesh.proto.v1.ActivationDType;
import io.lightmesh.proto.v1.ExpertBatch;
import io.lightmesh.proto.v1.ExpertCallClass;
import io.lightmesh.proto.v1.ExpertResult;
import io.lightmesh.proto.v1.LayerExperts;
import io.opentelemetry.context.Context;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.logging.Logger;

/**
 * The MoE experts of a layer computed by expert shards over gRPC, routed by the newest placement of a
 * {@link PlacementSource}, read once per call (so a new placement takes effect at the next step).
 *
 * <p>Per call, each (token, expert) slot goes to one live shard holding that expert; a replicated expert's slots
 * are divided over its replicas by {@link ReplicaSplit}: evenly (the remainder going round from call to call),
 * unless a replica's round trip per slot over the last {@value #SPEED_WINDOW_MS} ms is measurably above the other
 * shards' ({@link ReplicaSplit#SLOW}x), then by inverse speed, damped. Each replica takes a contiguous run of the
 * expert's slots in token order, so a token whose experts share replicas is mostly sent once. The rows routed to
 * each shard are packed into one {@link ExpertBatch} (slots computed elsewhere marked -1); all batches are sent
 * before any answer is awaited, so the shards compute in parallel; their partial sums are added. Each shard is reached over one long-lived {@code ComputeStream}, answers
 * matched by call id and completed on the transport thread.
 *
 * <p>Failover: a shard that fails a batch (stream error, UNAVAILABLE, no answer within the call timeout) is dead
 * from then on: its link is closed, it is reported to the source, and the rows it had are sent again to other
 * replicas (expert calls are pure functions of their inputs, so the retry gives the same bits). A dead shard gets
 * no rows until a health probe (Worker.Describe, {@value #PROBE_MS} ms deadline) answers: in the background every
 * {@code deadRetryMs} while other replicas serve, or at once when it is an expert's last replica. Rows are never
 * sent to a shard on the chance that it is back (a shard half gone can hold a batch for the whole call timeout). A
 * shard that refuses a batch because it no longer holds a pair (unloaded by a newer placement) gets that pair's
 * rows routed elsewhere. When some expert has no shard left, the call waits for a newer placement that covers it
 * (a controller's; at most {@code placementWaitMs}), and otherwise fails with {@link ExpertsUnavailableException}
 * (gRPC UNAVAILABLE). A fixed placement fails at once: nothing newer can come. After one such wait ran out, calls
 * routed by the same placement version fail at once too, until a newer version arrives.
 *
 * <p>A token's partial sums are added in the order the shards answer; with top-k = 2 (the model's) that is at
 * most two terms, and float addition of two terms commutes, so the output is bit-identical whichever replicas
 * computed the rows. Links to shards that leave the placement are closed when a newer version is first used; links
 * to new shards are opened by the first call that routes to them. Safe for concurrent calls.
 */
public final class RemoteExperts implements ExpertExecutor, AutoCloseable {
    private static final Logger LOG = Logger.getLogger(RemoteExperts.class.getName());

    /**
     * @param callTimeoutMs   longest wait for one shard's answer to one batch
     * @param placementWaitMs longest wait, within one call, for a placement that covers an expert left without a
     *                        live shard (keep it a few seconds below the request deadline)
     * @param deadRetryMs     how often a dead shard is probed while other replicas serve its experts
     * @param workerId        this worker, in reports
     * @param wire            element type of the rows sent and answered: F32 (the default) keeps the outputs the bits
     *                        of the in-process experts; BF16 halves the bytes, rounding each row and answer to bf16
     *                        (about 3 significant digits; not within the fp32 fixtures' 1e-4). A shard that refuses
     *                        BF16 (an older one) is sent F32 from then on.
     * @param callClass       ExpertBatch.call_class of every batch sent: a decode worker's DECODE, a prefill worker's
     *                        PREFILL (a shard with its priority gate on computes waiting decode batches first)
     * @param chunkRows       with callClass PREFILL, the most rows (tokens) one batch to one shard carries: a layer's
     *                        rows for a shard beyond it go as several batches, all sent at once (a shard computes them
     *                        one after the other, a decode batch can go between them); 0: one batch per shard
     */
    public record Settings(long callTimeoutMs, long placementWaitMs, long deadRetryMs, String workerId, ActivationDType wire,
                           ExpertCallClass callClass, int chunkRows) {
        public Settings {
            wire = WireRows.normalize(wire);
            if (callClass == null) callClass = ExpertCallClass.EXPERT_CALL_CLASS_UNSPECIFIED;
            if (chunkRows < 0) throw new IllegalArgumentException("chunkRows " + chunkRows + " < 0");
        }

        /** Unclassed batches, one per shard. */
        public Settings(long callTimeoutMs, long placementWaitMs, long deadRetryMs, String workerId, ActivationDType wire) {
            this(callTimeoutMs, placementWaitMs, deadRetryMs, workerId, wire, ExpertCallClass.EXPERT_CALL_CLASS_UNSPECIFIED, 0);
        }

        /** fp32 on the wire. */
        public Settings(long callTimeoutMs, long placementWaitMs, long deadRetryMs, String workerId) {
            this(callTimeoutMs, placementWaitMs, deadRetryMs, workerId, ActivationDType.ACTIVATION_DTYPE_F32);
        }

        /** Default timeouts; the wire from {@link #wireFromEnvironment}. */
        public static Settings defaults(String workerId) { return new Settings(30_000, 10_000, 5_000, workerId, wireFromEnvironment()); }

        /**
         * Default timeouts for a worker of this class: the wire from {@link #wireFromEnvironment}, a prefill worker's
         * chunks from {@code lightmesh.expert.prefillChunkRows} (default 0: off).
         */
        public static Settings defaults(String workerId, ExpertCallClass callClass) {
            int chunk = callClass == ExpertCallClass.EXPERT_CALL_CLASS_PREFILL ? Integer.getInteger("lightmesh.expert.prefillChunkRows", 0) : 0;
            return defaults(workerId).withCallClass(callClass).withChunkRows(chunk);
        }

        /** The same with rows of this element type on the wire. */
        public Settings withWire(ActivationDType d) { return new Settings(callTimeoutMs, placementWaitMs, deadRetryMs, workerId, d, callClass, chunkRows); }

        public Settings withCallClass(ExpertCallClass c) { return new Settings(callTimeoutMs, placementWaitMs, deadRetryMs, workerId, wire, c, chunkRows); }

        public Settings withChunkRows(int rows) { return new Settings(callTimeoutMs, placementWaitMs, deadRetryMs, workerId, wire, callClass, rows); }
    }

    /**
     * The wire chosen by {@code lightmesh.expert-wire} (system property) or {@code LIGHTMESH_EXPERT_WIRE}: {@code f32}
     * (the default) or {@code bf16} (opt-in).
     *
     * @throws IllegalArgumentException another value
     */
    public static ActivationDType wireFromEnvironment() {
        String v = System.getProperty("lightmesh.expert-wire", System.getenv("LIGHTMESH_EXPERT_WIRE"));
        if (v == null || v.isBlank() || v.trim().equalsIgnoreCase("f32")) return ActivationDType.ACTIVATION_DTYPE_F32;
        if (v.trim().equalsIgnoreCase("bf16")) return ActivationDType.ACTIVATION_DTYPE_BF16;
        throw new IllegalArgumentException("lightmesh.expert-wire must be f32 or bf16, not '" + v + "'");
    }

    private final PlacementSource source;
    private final boolean ownsSource;
    private final int hidden;
    private final Settings settings;
    private final AtomicLong callIds = new AtomicLong();
    /** Open links by {@link #key} of their shard. */
    private final Map<String, Link> links = new ConcurrentHashMap<>();
    /** Deadline of a health probe of a dead shard. */
    public static final long PROBE_MS = 1_000;
    /** Shards that failed and have not answered a probe since, by key: nanoTime of the next background probe. */
    private final Map<String, Long> deadUntil = new ConcurrentHashMap<>();
    /** Keys of dead shards being probed in the background now. */
    private final Set<String> probing = ConcurrentHashMap.newKeySet();
    /** "key|layer*E+expert" of pairs a shard refused as not held, with the placement version routed by then. */
    private final Map<String, Long> notHeld = new ConcurrentHashMap<>();
    private final Object reconcile = new Object();
    private volatile long reconciledVersion = Long.MIN_VALUE;
    /** A wait for a covering placement ran out at this version: calls routed by it fail at once. */
    private volatile long exhaustedVersion = Long.MIN_VALUE;
    private final int numLayers, numExperts;
    /** Per layer: nanoseconds spent in run(), number of calls, and the slowest shard's compute, for the benchmark. */
    private final LongAdder[] nanos, calls, computeMicros;
    /** Per layer and expert: tokens routed. */
    private final LongAdder[] tokensPerExpert;
    private final LongAdder resent = new LongAdder(), failures = new LongAdder();
    /** Batches beyond the first that a layer's rows for one shard were split into (Settings.chunkRows). */
    private final LongAdder chunks = new LongAdder();
    /** Where a call's time goes (all layers): see {@link Breakdown}. */
    private final LongAdder packNanos = new LongAdder(), sendNanos = new LongAdder(), unpackNanos = new LongAdder();
    /** ComputeStream with a response marshaller that times the parse of each answer (on the transport thread). */
    private final ExpertWire wire = new ExpertWire();
    /** Per layer and expert: where the next call's leftover slot of that expert starts among its replicas. */
    private final AtomicInteger[] rotation;
    /** Window over which a replica's round trip per slot is compared with the others'. */
    public static final long SPEED_WINDOW_MS = 5_000;
    /** Fewest slots in the window for a shard's round trip to count as measured. */
    static final long MIN_MEASURED_SLOTS = 64;
    /** Weights are updated at most this often. */
    static final long REWEIGH_MS = 1_000;
    private final AtomicLong nextReweigh = new AtomicLong(System.nanoTime());

    /** One shard: its channel and the stream to it (opened lazily, replaced after a failure). */
    private static final class Link {
        final ExpertPlacement.Shard shard;
        final String key;
        final ManagedChannel channel;
        final Map<Long, CompletableFuture<ExpertResult>> pending = new ConcurrentHashMap<>();
        /** Round trips of its answered batches (timed when the answer arrives, on the transport thread). */
        final RoundTripWindow roundTrips = new RoundTripWindow(SPEED_WINDOW_MS, 256);
        /** Its share of a replicated expert's slots relative to an even one (1); below 1 only when measurably slow. */
        volatile double weight = 1;
        /** No longer in the newest placement: its failures are not reported. */
        volatile boolean retired;
        /** Refused a BF16 batch (a shard from before BF16): sent F32 from then on. */
        volatile boolean f32Only;
        StreamObserver<ExpertBatch> out; // guarded by this

        private final ExpertWire wire;

        Link(ExpertPlacement.Shard shard, ExpertWire wire) {
            this.shard = shard;
            this.wire = wire;
            this.key = key(shard);
            this.channel = Grpc.directChannel(shard.address());
        }

        synchronized void send(ExpertBatch b, CompletableFuture<ExpertResult> answer) {
            pending.put(b.getCallId(), answer);
            try {
                if (out == null) {
                    out = io.grpc.stub.ClientCalls.asyncBidiStreamingCall(channel.newCall(wire.computeStream(), io.grpc.CallOptions.DEFAULT), new StreamObserver<>() {
                        @Override public void onNext(ExpertResult r) {
                            CompletableFuture<ExpertResult> f = pending.remove(r.getCallId());
                            if (f != null) f.complete(r);
                        }
                        @Override public void onError(Throwable t) { broken(this, t); }
                        @Override public void onCompleted() { broken(this, Status.UNAVAILABLE.withDescription("stream closed by the shard").asRuntimeException()); }
                    });
                }
                out.onNext(b);
            } catch (RuntimeException e) { // a shut-down channel, for one
                pending.remove(b.getCallId());
                answer.completeExceptionally(e);
            }
        }

        /** The stream ended: its pending calls fail, the next call opens a new one. */
        private void broken(StreamObserver<ExpertResult> observer, Throwable t) {
            synchronized (this) { out = null; }
            for (Long id : pending.keySet()) {
                CompletableFuture<ExpertResult> f = pending.remove(id);
                if (f != null) f.completeExceptionally(t);
            }
        }

        /** Cancels the stream (a shard that did not answer in time): what is pending fails, the next call reopens. */
        synchronized void reset(String why) {
            if (out instanceof ClientCallStreamObserver<ExpertBatch> c) c.cancel(why, null);
            out = null;
        }

        /** Half-closes the stream: the shard answers what it has, then the channel goes. */
        synchronized void retire() {
            retired = true;
            if (out != null) {
                try { out.onCompleted(); } catch (RuntimeException ignored) { }
                out = null;
            }
            channel.shutdown();
        }

        synchronized void close() {
            retire();
            channel.shutdownNow();
        }
    }

    private static String key(ExpertPlacement.Shard s) { return s.id() + "@" + s.address(); }

    /** Routed by a fixed placement (every pair must be held), default settings; failover among its replicas only. */
    public RemoteExperts(ExpertPlacement placement, int hidden, long timeoutMs) {
        this(requireComplete(placement), hidden, new Settings(timeoutMs, 10_000, 5_000, "worker"), true);
    }

    /**
     * @param source     where the newest placement comes from
     * @param ownsSource close the source with this
     */
    public RemoteExperts(PlacementSource source, int hidden, Settings settings, boolean ownsSource) {
        this(source, hidden, settings, ownsSource, shape(source));
    }

    /** As above, for a source that may have no placement yet: the model's layers and experts given. */
    public RemoteExperts(PlacementSource source, int hidden, Settings settings, boolean ownsSource, int[] layersAndExperts) {
        this.source = source;
        this.ownsSource = ownsSource;
        this.hidden = hidden;
        this.settings = settings;
        this.numLayers = layersAndExperts[0];
        this.numExperts = layersAndExperts[1];
        nanos = adders(numLayers);
        calls = adders(numLayers);
        computeMicros = adders(numLayers);
        tokensPerExpert = adders(numLayers * numExperts);
        rotation = new AtomicInteger[numLayers * numExperts];
        for (int i = 0; i < rotation.length; i++) rotation[i] = new AtomicInteger();
    }

    private static PlacementSource requireComplete(ExpertPlacement placement) {
        if (!placement.missing().isEmpty()) throw new IllegalArgumentException("no shard holds (layer/expert) " + placement.missing());
        return PlacementSource.fixed(placement);
    }

    private static int[] shape(PlacementSource s) {
        ExpertPlacement p = s.current();
        if (p == null) throw new IllegalArgumentException("the placement source has no placement yet: give the model's shape");
        return new int[] {p.numLayers(), p.numExperts()};
    }

    private static LongAdder[] adders(int n) {
        LongAdder[] a = new LongAdder[n];
        for (int i = 0; i < n; i++) a[i] = new LongAdder();
        return a;
    }

    /** Experts of some (layer, expert) unreachable: no live shard, and no newer placement covering it in time. */
    public static final class ExpertsUnavailableException extends StatusRuntimeException {
        public ExpertsUnavailableException(String message) { super(Status.UNAVAILABLE.withDescription(message)); }
    }

    /** One batch of one call: the shard, the rows sent there and the answer to come. */
    private record Sent(Link link, long callId, int[] rows, int[] slots, ActivationDType dtype, CompletableFuture<ExpertResult> answer) {}

    @Override
    public void run(int layer, float[] x, int n, int k, int[] experts, float[] weights, float[] out) {
        for (int i = 0; i < n * k; i++) tokensPerExpert[layer * numExperts + experts[i]].increment();
        call(layer, x, n, k, experts, weights, out, System.nanoTime(), MeshTelemetry.traceparent(Context.current()));
    }

    /**
     * -Dlightmesh.expert.asyncCalls=false: {@link #runAsync} as the default (the whole call on a pool thread), to
     * compare with the sent-here form; read at each call (a benchmark flips it between runs).
     */
    static boolean asyncCalls() { return !"false".equalsIgnoreCase(System.getProperty("lightmesh.expert.asyncCalls", "true")); }

    /**
     * The call sent from the caller's thread and completed where the last answer lands (the transport thread), with
     * no thread of its own: one hand-off fewer each way than {@link #run} on a pool thread (the device path's
     * micro-batches await it while the other's attention runs). When the first round is not clean (a shard failed,
     * refused, did not answer within the call timeout, or some expert has no live shard), what happened is recorded
     * as {@link #run} records it (a failed shard is dead and reported) and the whole call runs again through
     * {@link #run} on {@code pool}: expert calls are pure, so the result has the same bits. Bounded by twice the
     * call timeout (plus {@link #run}'s placement wait).
     */
    @Override
    public CompletableFuture<Void> runAsync(int layer, float[] x, int n, int k, int[] experts, float[] weights, float[] out,
                                            java.util.concurrent.Executor pool) {
        if (!asyncCalls()) return ExpertExecutor.super.runAsync(layer, x, n, k, experts, weights, out, pool);
        long t0 = System.nanoTime();
        for (int i = 0; i < n * k; i++) tokensPerExpert[layer * numExperts + experts[i]].increment();
        String traceparent = MeshTelemetry.traceparent(Context.current());
        Context context = Context.current();
        Runnable again = context.wrap(() -> {
            java.util.Arrays.fill(out, 0, n * hidden, 0f);
            call(layer, x, n, k, experts, weights, out, t0, traceparent);
        });
        ExpertPlacement p = source.current();
        List<Sent> sent = null;
        if (p != null && exhaustedVersion != p.version()) {
            reconcile(p);
            boolean[] done = new boolean[n * k];
            Link[] chosen = new Link[n * k];
            if (assign(p, layer, n, k, experts, done, new HashSet<>(), chosen) < 0) {
                java.util.Arrays.fill(out, 0, n * hidden, 0f);
                sent = send(p, layer, x, n, k, experts, weights, done, chosen, traceparent);
            }
        }
        if (sent == null) return CompletableFuture.runAsync(again, pool); // waits for a placement, or fails: run's way
        ExpertPlacement routed = p;
        List<Sent> batches = sent;
        CompletableFuture<Void> result = new CompletableFuture<>();
        CompletableFuture.allOf(sent.stream().map(Sent::answer).toArray(CompletableFuture[]::new))
                .orTimeout(settings.callTimeoutMs(), TimeUnit.MILLISECONDS)
                .whenComplete((v, e) -> {
                    try {
                        if (e == null && addAnswers(batches, layer, out, t0)) {
                            result.complete(null);
                            return;
                        }
                        settle(batches, routed);
                        pool.execute(() -> {
                            try {
                                again.run();
                                result.complete(null);
                            } catch (Throwable t) {
                                result.completeExceptionally(t);
                            }
                        });
                    } catch (Throwable t) {
                        result.completeExceptionally(t);
                    }
                });
        return result;
    }

    /**
     * Every batch answered without error and with its rows: they are added into out (on this one thread, so a
     * token's two partial sums are not added at once) and the call is counted; else false and out is left for a
     * second try.
     */
    private boolean addAnswers(List<Sent> sent, int layer, float[] out, long t0) {
        for (Sent s : sent) {
            ExpertResult r = s.answer().getNow(null);
            if (r == null || r.hasError()) return false;
            ActivationDType answered = WireRows.normalize(r.getDtype());
            if (r.getNumTokens() != s.rows().length || r.getCombined().size() != (long) s.rows().length * hidden * WireRows.elementBytes(answered)) {
                return false; // run() names the malformed answer
            }
        }
        long slowestCompute = 0, unpackFrom = System.nanoTime();
        for (Sent s : sent) {
            ExpertResult r = s.answer().getNow(null);
            slowestCompute = Math.max(slowestCompute, r.getComputeUs());
            WireRows.Reader part = WireRows.reader(r.getCombined(), WireRows.normalize(r.getDtype()));
            for (int i = 0; i < s.rows().length; i++) part.addRow(i, hidden, out, s.rows()[i] * hidden);
        }
        unpackNanos.add(System.nanoTime() - unpackFrom);
        reweigh();
        nanos[layer].add(System.nanoTime() - t0);
        computeMicros[layer].add(slowestCompute);
        calls[layer].increment();
        return true;
    }

    /**
     * A first round that was not clean, recorded as {@link #call} records its rounds: a shard that failed or did not
     * answer is dead (its stream reset, reported), a pair it no longer holds is noted, a shard that refused bf16 is
     * sent f32; a busy one is left as it is.
     */
    private void settle(List<Sent> sent, ExpertPlacement p) {
        for (Sent s : sent) {
            Link l = s.link();
            if (!s.answer().isDone()) {
                l.pending.remove(s.callId());
                s.answer().completeExceptionally(Status.DEADLINE_EXCEEDED.withDescription("no answer within " + settings.callTimeoutMs() + " ms").asRuntimeException());
                l.reset("no answer within " + settings.callTimeoutMs() + " ms");
            }
            ExpertResult r;
            try {
                r = s.answer().getNow(null);
            } catch (RuntimeException e) { // CompletionException, CancellationException
                fail(l, l.shard + ": " + describe(e), p.version());
                resent.add(s.slots().length);
                continue;
            }
            if (r == null || !r.hasError()) continue;
            resent.add(s.slots().length);
            int code = r.getError().getCode();
            if (code == Status.Code.RESOURCE_EXHAUSTED.value() || code == Status.Code.UNAVAILABLE.value()) continue; // busy or closing
            if (r.getError().getNotHeldCount() > 0) {
                for (LayerExperts le : r.getError().getNotHeldList()) {
                    for (int e : le.getExpertsList()) notHeld.put(l.key + "|" + (le.getLayer() * numExperts + e), p.version());
                }
            } else if (s.dtype() == ActivationDType.ACTIVATION_DTYPE_BF16 && !l.f32Only) {
                l.f32Only = true;
                LOG.info(settings.workerId() + ": expert shard " + l.shard + " refused bf16 rows (" + r.getError().getMessage() + "); sending it f32");
            }
        }
    }

    /** {@link #run} after the tokens were counted: t0 when the call began, the caller's trace. */
    private void call(int layer, float[] x, int n, int k, int[] experts, float[] weights, float[] out, long t0, String traceparent) {
        java.util.Arrays.fill(out, 0, n * hidden, 0f);
        ExpertPlacement p = placementForCall();
        boolean[] done = new boolean[n * k];
        int left = n * k;
        Set<String> failedHere = new HashSet<>();
        String lastCause = null;
        long waitUntil = 0;
        long slowestCompute = 0;
        for (int round = 0; left > 0; round++) {
            if (round > 64) throw new ExpertsUnavailableException("expert call of layer " + layer + " still incomplete after " + round + " rounds of failover: " + lastCause);
            reconcile(p);
            Link[] chosen = new Link[n * k];
            int uncovered = assign(p, layer, n, k, experts, done, failedHere, chosen);
            if (uncovered >= 0) {
                // some expert has no live shard in p: a newer placement may cover it
                ExpertPlacement newer = source.current();
                if (newer != null && newer.version() > p.version()) { p = newer; continue; }
                if (reviveReplicas(p, layer, uncovered, failedHere)) continue; // a dead replica answered its probe
                List<String> holders = new ArrayList<>();
                for (int r : p.replicas(layer, uncovered)) holders.add(p.shards().get(r).toString());
                String what = "no reachable expert shard holds expert " + uncovered + " of layer " + layer + " (placement version " + p.version()
                        + (holders.isEmpty() ? ": none holds it" : ": held by " + holders + ", all failed") + ")"
                        + (lastCause == null ? "" : "; last failure: " + lastCause);
                if (!source.dynamic()) throw new ExpertsUnavailableException(what + "; no placement controller to re-place it");
                if (exhaustedVersion == p.version()) throw new ExpertsUnavailableException(what + "; no newer placement came");
                long now = System.nanoTime();
                if (waitUntil == 0) waitUntil = now + settings.placementWaitMs() * 1_000_000;
                long waitMs = (waitUntil - now) / 1_000_000;
                try {
                    newer = waitMs <= 0 ? null : source.awaitNewer(p.version(), waitMs);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new ExpertsUnavailableException(what + "; interrupted waiting for a newer placement");
                }
                if (newer != null && newer.version() > p.version()) { p = newer; continue; }
                exhaustedVersion = p.version();
                throw new ExpertsUnavailableException(what + "; no newer placement within " + settings.placementWaitMs() + " ms");
            }
            List<Sent> sent = send(p, layer, x, n, k, experts, weights, done, chosen, traceparent);
            long deadline = System.nanoTime() + settings.callTimeoutMs() * 1_000_000;
            for (Sent s : sent) {
                ExpertResult r = await(s, deadline);
                Link l = s.link();
                if (r == null) { // failed: the shard is dead, its rows go elsewhere next round
                    lastCause = l.shard + ": " + s.answer().handle((v, e) -> e == null ? "?" : describe(e)).getNow("no answer within " + settings.callTimeoutMs() + " ms");
                    failedHere.add(l.key);
                    fail(l, lastCause, p.version());
                    resent.add(s.slots().length);
                    continue;
                }
                if (r.hasError()) {
                    int code = r.getError().getCode();
                    if (code == Status.Code.RESOURCE_EXHAUSTED.value() || code == Status.Code.UNAVAILABLE.value()) {
                        // the shard is alive but busy (its compute queue is full) or closing: its rows go to a replica
                        // this call; it is not marked dead, so later calls use it again
                        lastCause = l.shard + ": " + r.getError().getMessage();
                        failedHere.add(l.key);
                        resent.add(s.slots().length);
                        continue;
                    }
                    if (r.getError().getNotHeldCount() == 0 && s.dtype() == ActivationDType.ACTIVATION_DTYPE_BF16 && !l.f32Only) {
                        // a shard from before BF16 refuses it as malformed: its rows go again, as F32 (a batch malformed
                        // otherwise is refused again and fails below)
                        l.f32Only = true;
                        LOG.info(settings.workerId() + ": expert shard " + l.shard + " refused bf16 rows (" + r.getError().getMessage() + "); sending it f32");
                        resent.add(s.slots().length);
                        continue;
                    }
                    if (r.getError().getNotHeldCount() == 0) {
                        throw new IllegalStateException("expert shard " + l.shard + " refused a batch of layer " + layer + ": " + r.getError().getMessage());
                    }
                    for (LayerExperts le : r.getError().getNotHeldList()) {
                        for (int e : le.getExpertsList()) notHeld.put(l.key + "|" + (le.getLayer() * numExperts + e), p.version());
                    }
                    lastCause = l.shard + ": " + r.getError().getMessage();
                    resent.add(s.slots().length);
                    continue;
                }
                int m = s.rows().length;
                ActivationDType answered = WireRows.normalize(r.getDtype());
                if (r.getNumTokens() != m || r.getCombined().size() != (long) m * hidden * WireRows.elementBytes(answered)) {
                    throw new IllegalStateException("expert shard " + l.shard + " answered " + r.getNumTokens() + " rows of "
                            + r.getCombined().size() + " bytes (" + answered + ") for " + m);
                }
                slowestCompute = Math.max(slowestCompute, r.getComputeUs());
                long unpackFrom = System.nanoTime();
                WireRows.Reader part = WireRows.reader(r.getCombined(), answered);
                for (int i = 0; i < m; i++) part.addRow(i, hidden, out, s.rows()[i] * hidden);
                unpackNanos.add(System.nanoTime() - unpackFrom);
                for (int slot : s.slots()) done[slot] = true;
                left -= s.slots().length;
            }
        }
        reweigh();
        nanos[layer].add(System.nanoTime() - t0);
        computeMicros[layer].add(slowestCompute);
        calls[layer].increment();
    }

    /** The newest placement, waiting (up to placementWaitMs) for a first one from a controller. */
    private ExpertPlacement placementForCall() {
        ExpertPlacement p = source.current();
        if (p != null) return p;
        try {
            p = source.awaitNewer(Long.MIN_VALUE, settings.placementWaitMs());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (p == null) throw new ExpertsUnavailableException("no expert placement yet (" + source + ")");
        return p;
    }

    /** On the first call routed by a newer version: links of shards it no longer lists are closed. */
    private void reconcile(ExpertPlacement p) {
        if (p.version() <= reconciledVersion) return;
        synchronized (reconcile) {
            if (p.version() <= reconciledVersion) return;
            Set<String> keep = new HashSet<>();
            for (ExpertPlacement.Shard s : p.shards()) keep.add(key(s));
            for (Map.Entry<String, Link> en : links.entrySet()) {
                if (keep.contains(en.getKey())) continue;
                if (links.remove(en.getKey(), en.getValue())) en.getValue().retire();
                deadUntil.remove(en.getKey());
            }
            notHeld.values().removeIf(v -> v < p.version()); // the newer placement says who holds what
            reconciledVersion = p.version();
        }
    }

    /**
     * Chooses a shard for every slot not done. Candidates of an expert: its live replicas not failed in this call
     * and not known to have dropped the pair; its slots are divided over them by {@link ReplicaSplit#quotas} with
     * the replicas' weights, each taking a contiguous run in token order. Answers -1, or an expert with no candidate.
     */
    private int assign(ExpertPlacement p, int layer, int n, int k, int[] experts, boolean[] done, Set<String> failedHere, Link[] chosen) {
        int S = p.shards().size();
        Link[] usable = new Link[S];
        boolean[] looked = new boolean[S];
        boolean anyNotHeld = !notHeld.isEmpty();
        long now = System.nanoTime();
        int[] count = new int[numExperts];
        for (int slot = 0; slot < n * k; slot++) if (!done[slot]) count[experts[slot]]++;
        // per expert with slots: its candidates and how many slots each takes, then dealt in token order
        Link[][] cands = new Link[numExperts][];
        int[][] quota = new int[numExperts][];
        int[] at = new int[numExperts];
        for (int e = 0; e < numExperts; e++) {
            if (count[e] == 0) continue;
            List<Link> cs = new ArrayList<>();
            for (int r : p.replicas(layer, e)) {
                if (!looked[r]) {
                    looked[r] = true;
                    usable[r] = usable(p.shards().get(r), failedHere, now);
                }
                Link l = usable[r];
                if (l == null || anyNotHeld && notHeld.containsKey(l.key + "|" + (layer * numExperts + e))) continue;
                cs.add(l);
            }
            if (cs.isEmpty()) return e;
            cands[e] = cs.toArray(new Link[0]);
            double[] w = new double[cands[e].length];
            for (int i = 0; i < w.length; i++) w[i] = cands[e][i].weight;
            quota[e] = cands[e].length == 1 ? new int[] {count[e]}
                    : ReplicaSplit.quotas(count[e], w, rotation[layer * numExperts + e].getAndIncrement());
        }
        for (int slot = 0; slot < n * k; slot++) {
            if (done[slot]) continue;
            int e = experts[slot];
            while (quota[e][at[e]] == 0) at[e]++;
            quota[e][at[e]]--;
            chosen[slot] = cands[e][at[e]];
        }
        return -1;
    }

    /**
     * At most every {@value #REWEIGH_MS} ms: each open link's weight moved by {@link ReplicaSplit#nextWeight} from
     * its round trip per slot over the window against the other links'.
     */
    private void reweigh() {
        long now = System.nanoTime(), due = nextReweigh.get();
        if (now - due < 0 || !nextReweigh.compareAndSet(due, now + REWEIGH_MS * 1_000_000)) return;
        List<Link> ls = new ArrayList<>(links.values());
        double[] us = new double[ls.size()];
        for (int i = 0; i < us.length; i++) us[i] = ls.get(i).roundTrips.microsPerSlot(now, MIN_MEASURED_SLOTS);
        for (int i = 0; i < us.length; i++) {
            double[] others = new double[us.length - 1];
            for (int j = 0, o = 0; j < us.length; j++) if (j != i) others[o++] = us[j];
            Link l = ls.get(i);
            double mine = us[i], w = ReplicaSplit.nextWeight(l.weight, mine, others);
            if (w != l.weight) {
                LOG.fine(() -> settings.workerId() + ": expert shard " + l.shard + " weight " + w + " (round trip per slot "
                        + Math.round(mine) + " us, others " + java.util.Arrays.toString(others) + ")");
                l.weight = w;
            }
        }
    }

    /** Each open link's shard id and weight (1 = an even share), for tests and benchmarks. */
    public Map<String, Double> replicaWeights() {
        Map<String, Double> m = new java.util.TreeMap<>();
        for (Link l : links.values()) m.put(l.shard.id(), l.weight);
        return m;
    }

    /** The link to a shard that may take rows now; null when it failed in this call or is dead (a probe is started when due). */
    private Link usable(ExpertPlacement.Shard s, Set<String> failedHere, long now) {
        String key = key(s);
        if (failedHere.contains(key)) return null;
        Long next = deadUntil.get(key);
        if (next != null) { // dead: no rows until a probe answers
            if (next - now <= 0) probeInBackground(s);
            return null;
        }
        return link(s);
    }

    private Link link(ExpertPlacement.Shard s) {
        return links.computeIfAbsent(key(s), x -> new Link(s, wire));
    }

    /** One batch per chosen shard with its rows (slots computed elsewhere marked -1), all sent before any wait. */
    private List<Sent> send(ExpertPlacement p, int layer, float[] x, int n, int k, int[] experts, float[] weights, boolean[] done,
                            Link[] chosen, String traceparent) {
        long packFrom = System.nanoTime();
        Map<Link, List<Integer>> rowsOf = new HashMap<>();
        List<Link> order = new ArrayList<>();
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < k; j++) {
                Link l = chosen[t * k + j];
                if (l == null || done[t * k + j]) continue;
                List<Integer> rs = rowsOf.get(l);
                if (rs == null) { rowsOf.put(l, rs = new ArrayList<>()); order.add(l); }
                if (rs.isEmpty() || rs.getLast() != t) rs.add(t);
            }
        }
        List<Sent> sent = new ArrayList<>();
        int chunk = settings.chunkRows() > 0 && settings.callClass() == ExpertCallClass.EXPERT_CALL_CLASS_PREFILL ? settings.chunkRows() : Integer.MAX_VALUE;
        for (Link l : order) {
            List<Integer> all = rowsOf.get(l);
            for (int from = 0; from < all.size(); from += chunk) {
                List<Integer> rs = all.subList(from, (int) Math.min(all.size(), (long) from + chunk)); // one chunk's rows
                if (from > 0) chunks.increment();
                int m = rs.size();
                int[] rows = new int[m];
                List<Integer> slots = new ArrayList<>();
                ActivationDType dtype = l.f32Only ? ActivationDType.ACTIVATION_DTYPE_F32 : settings.wire();
                long id = callIds.incrementAndGet();
                ExpertBatch.Builder b = ExpertBatch.newBuilder().setCallId(id).setLayer(layer).setNumTokens(m).setTopK(k)
                        .setDtype(dtype).setTraceparent(traceparent).setPlacementVersion(p.version()).setCallClass(settings.callClass());
                for (int i = 0; i < m; i++) {
                    int t = rows[i] = rs.get(i);
                    for (int j = 0; j < k; j++) {
                        int slot = t * k + j;
                        boolean here = chosen[slot] == l && !done[slot];
                        b.addExperts(here ? experts[slot] : -1);
                        b.addWeights(weights[slot]);
                        if (here) slots.add(slot);
                    }
                }
                b.setHidden(WireRows.gather(x, rows, hidden, dtype)); // the rows written straight into the message's bytes
                int[] slotArray = slots.stream().mapToInt(Integer::intValue).toArray();
                CompletableFuture<ExpertResult> answer = new CompletableFuture<>();
                long sentNanos = System.nanoTime();
                sent.add(new Sent(l, id, rows, slotArray, dtype, answer));
                // timed where the answer lands, not where this call gets round to it (answers are awaited in turn)
                answer.thenAccept(r -> {
                    if (!r.hasError()) l.roundTrips.add(System.nanoTime(), slotArray.length, (System.nanoTime() - sentNanos) / 1_000);
                });
                ExpertBatch batch = b.build();
                long built = System.nanoTime();
                packNanos.add(built - packFrom);
                l.send(batch, answer); // serialized and framed on this thread, then handed to the transport
                packFrom = System.nanoTime();
                sendNanos.add(packFrom - built);
            }
        }
        packNanos.add(System.nanoTime() - packFrom);
        return sent;
    }

    /** The answer, or null when the shard failed or did not answer by the deadline. */
    private ExpertResult await(Sent s, long deadlineNanos) {
        try {
            return s.answer().get(Math.max(0, deadlineNanos - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ExpertsUnavailableException("interrupted waiting for expert shard " + s.link().shard);
        } catch (ExecutionException e) {
            return null;
        } catch (TimeoutException e) {
            s.link().pending.remove(s.callId());
            s.answer().completeExceptionally(Status.DEADLINE_EXCEEDED.withDescription("no answer within " + settings.callTimeoutMs() + " ms").asRuntimeException());
            s.link().reset("no answer within " + settings.callTimeoutMs() + " ms");
            return null;
        }
    }

    private static String describe(Throwable e) {
        if (e instanceof java.util.concurrent.CompletionException && e.getCause() != null) e = e.getCause();
        return e instanceof StatusRuntimeException s ? s.getStatus().toString() : e.toString();
    }

    /** A shard failed a batch: dead (its link closed) until a probe answers; reported unless it left the placement. */
    private void fail(Link l, String cause, long version) {
        failures.increment();
        if (l.retired) return;
        Long was = deadUntil.put(l.key, System.nanoTime() + settings.deadRetryMs() * 1_000_000);
        if (links.remove(l.key, l)) l.close(); // a fresh channel after the shard is back
        if (was != null) return; // already dead: reported when it died
        LOG.warning(settings.workerId() + ": expert shard " + l.shard + " failed (" + cause + "); its rows go to other replicas");
        source.reportUnreachable(l.shard, cause, version);
    }

    /**
     * The dead replicas of (layer, expert) in {@code p} not failed in this call, probed now, one after the other;
     * true when one answered (it is live again). Each probe is bounded by {@value #PROBE_MS} ms.
     */
    private boolean reviveReplicas(ExpertPlacement p, int layer, int expert, Set<String> failedHere) {
        for (int r : p.replicas(layer, expert)) {
            ExpertPlacement.Shard s = p.shards().get(r);
            String key = key(s);
            if (failedHere.contains(key) || !deadUntil.containsKey(key)) continue;
            if (probe(s)) return true;
            failedHere.add(key); // probed once per call
        }
        return false;
    }

    /** Worker.Describe on a fresh channel, {@value #PROBE_MS} ms deadline; a shard that answers is live again. */
    private boolean probe(ExpertPlacement.Shard s) {
        ManagedChannel ch = Grpc.channel(s.address());
        try {
            io.lightmesh.proto.v1.WorkerGrpc.newBlockingStub(ch).withDeadlineAfter(PROBE_MS, TimeUnit.MILLISECONDS)
                    .describe(io.lightmesh.proto.v1.DescribeRequest.getDefaultInstance());
            revive(s);
            return true;
        } catch (StatusRuntimeException e) {
            deadUntil.computeIfPresent(key(s), (k, v) -> System.nanoTime() + settings.deadRetryMs() * 1_000_000);
            return false;
        } finally {
            ch.shutdownNow();
        }
    }

    private void revive(ExpertPlacement.Shard s) {
        if (deadUntil.remove(key(s)) != null) LOG.info(settings.workerId() + ": expert shard " + s + " answers again");
    }

    /** A probe of a dead shard off the caller's thread, at most one at a time per shard. */
    private void probeInBackground(ExpertPlacement.Shard s) {
        String key = key(s);
        if (!probing.add(key)) return;
        deadUntil.computeIfPresent(key, (k, v) -> System.nanoTime() + settings.deadRetryMs() * 1_000_000); // next one later
        Thread.ofVirtual().name("expert-probe-" + s.id()).start(() -> {
            try { probe(s); } finally { probing.remove(key); }
        });
    }

    /** Mean microseconds of one expert call (all shards, round trip) for each layer; NaN where none was made. */
    public double[] meanCallMicrosPerLayer() {
        double[] m = new double[nanos.length];
        for (int l = 0; l < m.length; l++) {
            long c = calls[l].sum();
            m[l] = c == 0 ? Double.NaN : nanos[l].sum() / 1e3 / c;
        }
        return m;
    }

    /** Mean microseconds per call of the slowest shard's own compute, per layer: round trip minus this is transport. */
    public double[] meanComputeMicrosPerLayer() {
        double[] m = new double[nanos.length];
        for (int l = 0; l < m.length; l++) {
            long c = calls[l].sum();
            m[l] = c == 0 ? Double.NaN : (double) computeMicros[l].sum() / c;
        }
        return m;
    }

    /** Tokens routed to (layer, expert) so far: [layer * numExperts + expert]. */
    public long[] tokensPerExpert() {
        long[] t = new long[tokensPerExpert.length];
        for (int i = 0; i < t.length; i++) t[i] = tokensPerExpert[i].sum();
        return t;
    }

    /** (token, expert) slots sent again after a shard failed or refused them. */
    public long resentSlots() { return resent.sum(); }

    /** Extra batches sent because a prefill call's rows for a shard were split into chunks (Settings.chunkRows). */
    public long extraChunks() { return chunks.sum(); }

    public Settings settings() { return settings; }

    /** Batches that failed (shard error, unreachable, no answer in time). */
    public long failedBatches() { return failures.sum(); }

    /** Ids of the shards dead now (failed, no probe answered since). */
    public Set<String> avoidedShards() {
        Set<String> s = new HashSet<>();
        deadUntil.keySet().forEach(k -> s.add(k.substring(0, k.indexOf('@'))));
        return s;
    }

    /**
     * Mean microseconds per expert call (over all layers since {@link #resetStats}) of each part of the caller's
     * side: packing the rows into batches, serializing and framing them (on the caller's thread), parsing the
     * answers (on the transport thread), adding the answers into the output; with the whole round trip and the
     * slowest shard's own compute. What is left of the round trip is the wire, the shards' parse and serialization,
     * and the thread hand-offs.
     */
    public record Breakdown(long calls, double roundTripUs, double packUs, double sendUs, double parseUs, double unpackUs, double computeUs) {}

    public Breakdown breakdown() {
        long c = 0, ns = 0, us = 0;
        for (int l = 0; l < nanos.length; l++) { c += calls[l].sum(); ns += nanos[l].sum(); us += computeMicros[l].sum(); }
        if (c == 0) return new Breakdown(0, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN);
        return new Breakdown(c, ns / 1e3 / c, packNanos.sum() / 1e3 / c, sendNanos.sum() / 1e3 / c, wire.parseNanos() / 1e3 / c,
                unpackNanos.sum() / 1e3 / c, (double) us / c);
    }

    public void resetStats() {
        packNanos.reset();
        sendNanos.reset();
        unpackNanos.reset();
        wire.resetStats();
        for (LongAdder a : nanos) a.reset();
        for (LongAdder a : calls) a.reset();
        for (LongAdder a : computeMicros) a.reset();
    }

    /** The newest placement of the source (what the next call routes by); null while it has none. */
    public ExpertPlacement placement() { return source.current(); }

    public PlacementSource source() { return source; }

    @Override
    public void close() {
        for (Link l : links.values()) l.close();
        links.clear();
        if (ownsSource) source.close();
    }
}
