package io.lightmesh.decode;

import io.grpc.BindableService;
import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.generate.ContinuousBatcher;
import io.lightmesh.engine.generate.Generation;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.Specs;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.proto.v1.AckStatus;
import io.lightmesh.proto.v1.CancelRequest;
import io.lightmesh.proto.v1.CancelResponse;
import io.lightmesh.proto.v1.DecodeEvent;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.lightmesh.proto.v1.DecodeRequest;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.RequestStats;
import io.lightmesh.proto.v1.ReserveRequest;
import io.lightmesh.proto.v1.ReserveResponse;
import io.lightmesh.proto.v1.StateAck;
import io.lightmesh.proto.v1.StateChunk;
import io.lightmesh.proto.v1.StateHeader;
import io.lightmesh.proto.v1.StateTransferGrpc;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.lightmesh.proto.v1.WorkerKind;
import io.lightmesh.proto.v1.WorkerLoad;

import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.DoubleHistogram;
import io.opentelemetry.api.metrics.LongCounter;
import io.opentelemetry.api.metrics.LongHistogram;
import io.opentelemetry.api.metrics.Meter;
import io.opentelemetry.api.metrics.ObservableLongGauge;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanBuilder;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.logging.Logger;

/**
 * A decode worker: accepts sequence states within a byte budget (StateTransfer), runs them with the engine's
 * {@link ContinuousBatcher} (sequences join and leave the batch between steps; each is an engine {@link Generation},
 * rebuilt from the spec and the tokens generated before the hand-off), and streams their tokens and text to whoever
 * follows them (Decode.Generate). A sequence's state is freed when it finishes, is cancelled, or fails.
 *
 * <p>Budget: a sequence is charged the serialised size of its state at its longest (position + max_new_tokens),
 * once per choice (a request asking for n samples decodes n copies of its prefilled state), so an accepted sequence
 * never outgrows the budget.
 */
public final class DecodeWorker implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(DecodeWorker.class.getName());

    /** Settings of a decode worker (config keys lightmesh.decode.*). */
    public record Settings(String workerId, String address, long stateBudgetBytes, int maxBatch, long stateWaitMs) {}

    private final Settings settings;
    private final MeshModel meshModel;
    private final MiniMaxModel model; // local or remote experts
    private final boolean remoteExperts;
    private final ContinuousBatcher batcher;
    private final Map<String, Slot> slots = new ConcurrentHashMap<>();
    private final Map<String, Long> reservations = new HashMap<>(); // request id -> bytes (guarded by this)
    private final Map<String, Long> reservationExpiry = new HashMap<>();
    private final Set<String> finished = Collections.newSetFromMap(new LinkedHashMap<>(1024, 0.75f, false) {
        @Override protected boolean removeEldestEntry(Map.Entry<String, Boolean> e) { return size() > 100_000; }
    });
    private long usedBytes; // charged sequences + reservations (guarded by this)
    private final LinkedBlockingQueue<Slot> joins = new LinkedBlockingQueue<>();
    private final Thread loop;
    private final ScheduledExecutorService timers = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "decode-timers");
        t.setDaemon(true);
        return t;
    });
    private volatile boolean running = true;
    private volatile int activeCount;
    /** Metrics: decode steps, sequences summed over steps (mean batch size = rows / steps), step nanoseconds. */
    public final LongAdder steps = new LongAdder(), stepRows = new LongAdder(), stepNanos = new LongAdder();
    public final AtomicLong stateBytesReceived = new AtomicLong();

    private final Tracer tracer;
    private final LongHistogram batchSize;
    private final DoubleHistogram stepSeconds;
    private final LongCounter stateBytes;
    private final ObservableLongGauge activeGauge;
    /** State bytes charged and the budget: what an autoscaler of decode workers scales on (with active sequences). */
    private final ObservableLongGauge stateUsedGauge, stateBudgetGauge;
    /** Events of the current step, sent when it ends (decode loop only), and the thread that sends them, in order. */
    private final List<Runnable> stepEvents = new ArrayList<>();
    private final java.util.concurrent.ExecutorService events;
    /** Sequences in the batcher, in the order they joined (the decode loop's own view, for step spans). */
    private final List<Slot> decoding = new ArrayList<>();

    public DecodeWorker(Settings settings, MeshModel meshModel, MiniMaxModel model, boolean remoteExperts) {
        this(settings, meshModel, model, remoteExperts, OpenTelemetry.noop());
    }

    /**
     * @param otel spans: "lightmesh.state receive" per hand-off, "lightmesh.decode" per sequence, "lightmesh.decode step"
     *             per batched step (child of the batch's first sequence, linked to the others: expert calls made
     *             during the step carry it); metrics: batch size, step time, state bytes received, active sequences
     */
    public DecodeWorker(Settings settings, MeshModel meshModel, MiniMaxModel model, boolean remoteExperts, OpenTelemetry otel) {
        this.tracer = otel.getTracer(MeshTelemetry.SCOPE);
        Meter meter = otel.getMeter(MeshTelemetry.SCOPE);
        this.batchSize = meter.histogramBuilder("lightmesh.decode.batch.size").ofLongs().setUnit("{sequence}")
                .setDescription("Sequences in one batched decode step").build();
        this.stepSeconds = meter.histogramBuilder("lightmesh.decode.step.duration").setUnit("s")
                .setDescription("Time of one batched decode step (forward pass, sampling, events)").build();
        this.stateBytes = meter.counterBuilder("lightmesh.state.transferred").setUnit("By")
                .setDescription("Bytes of sequence state received from prefill workers (accepted hand-offs)").build();
        this.activeGauge = meter.gaugeBuilder("lightmesh.decode.sequences.active").ofLongs().setUnit("{sequence}")
                .setDescription("Sequences being decoded").buildWithCallback(m -> m.record(activeCount, Attributes.of(
                        io.opentelemetry.api.common.AttributeKey.stringKey("lightmesh.worker"), settings.workerId())));
        io.opentelemetry.api.common.Attributes worker = Attributes.of(
                io.opentelemetry.api.common.AttributeKey.stringKey("lightmesh.worker"), settings.workerId());
        this.stateUsedGauge = meter.gaugeBuilder("lightmesh.decode.state.used").ofLongs().setUnit("By")
                .setDescription("Sequence state bytes charged (held and reserved) on this decode worker")
                .buildWithCallback(m -> m.record(usedBytes(), worker));
        this.stateBudgetGauge = meter.gaugeBuilder("lightmesh.decode.state.budget").ofLongs().setUnit("By")
                .setDescription("Sequence state budget of this decode worker").buildWithCallback(m -> m.record(settings.stateBudgetBytes(), worker));
        this.settings = settings;
        this.events = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "decode-events-" + settings.workerId());
            t.setDaemon(true);
            return t;
        });
        this.meshModel = meshModel;
        this.model = model;
        this.remoteExperts = remoteExperts;
        io.lightmesh.mesh.WorkerPath.announce("decode", settings.workerId(), model, otel);
        this.batcher = new ContinuousBatcher(model, settings.maxBatch(), this::onStep);
        this.loop = new Thread(this::runLoop, "decode-loop-" + settings.workerId());
        loop.setDaemon(true);
        loop.start();
    }

    public List<BindableService> services() {
        return List.of(new TransferService(), new DecodeService(), new WorkerService());
    }

    // ---- one request's place in the worker: its follower, its sequence, and events not yet delivered ----

    private final class Slot {
        final String id;
        ServerCallStreamObserver<DecodeEvent> follower;
        final ArrayDeque<DecodeEvent> backlog = new ArrayDeque<>();
        boolean closed;          // last event emitted or failed
        Status failure;          // when closed by an error
        // the sequence (null until its state arrives)
        GenerationSpec spec;
        volatile SequenceState state;
        Generation generation;   // choice 0 (null when not decoding)
        List<Generation> choices = List.of(); // every choice, index order (sampling.n; one copy of the state each)
        long charge;
        int[] delivered;         // per choice: tokens generated so far (a resume's earlier ones included)
        int open;                // choices not finished yet
        List<io.lightmesh.proto.v1.TokenLogprob> promptLogprobs = List.of(); // sent with the first event, then dropped
        volatile boolean cancelled;
        RequestStats.Builder stats;
        Span span;               // "lightmesh.decode": from the state's arrival to the sequence's end

        Slot(String id) { this.id = id; }

        synchronized void attach(ServerCallStreamObserver<DecodeEvent> f) {
            follower = f;
            while (!backlog.isEmpty()) f.onNext(backlog.poll());
            if (closed) finishFollower();
        }

        synchronized void emit(DecodeEvent e, boolean last) {
            if (closed) return; // failed or cancelled meanwhile
            if (follower != null && !follower.isCancelled()) follower.onNext(e);
            else backlog.add(e);
            if (last) {
                closed = true;
                if (follower != null) finishFollower();
            }
        }

        synchronized void fail(Status s) {
            if (closed) return;
            closed = true;
            failure = s;
            if (follower != null) finishFollower();
        }

        private void finishFollower() {
            if (follower.isCancelled()) return;
            if (failure != null) follower.onError(failure.asRuntimeException());
            else follower.onCompleted();
        }
    }

    private Slot slot(String id) { return slots.computeIfAbsent(id, Slot::new); }

    /** Frees a sequence's state and budget and forgets the slot. */
    private void release(Slot s) {
        synchronized (this) {
            usedBytes -= s.charge;
            s.charge = 0;
            finished.add(s.id);
        }
        SequenceState done = s.state;
        if (done != null) done.discardDevice(); // device memory back now, not when the GC gets to it
        for (Generation g : s.choices) if (g.state() != null && g.state() != done) g.state().discardDevice(); // the forks
        s.state = null;
        s.generation = null;
        s.choices = List.of();
        slots.remove(s.id, s);
        Span span = s.span;
        if (span != null) {
            s.span = null;
            if (s.failure != null) span.setStatus(StatusCode.ERROR, s.failure.toString());
            span.end();
        }
    }

    public boolean cancelRequest(String id, String reason) {
        return cancelRequest(id, Status.CANCELLED.withDescription(reason));
    }

    /** Cancels a request, its follower ending with {@code why} (CANCELLED, or UNAVAILABLE when a prefill worker cannot compute it now). */
    public boolean cancelRequest(String id, Status why) {
        Slot s = slots.get(id);
        synchronized (this) {
            Long r = reservations.remove(id);
            if (r != null) { usedBytes -= r; reservationExpiry.remove(id); }
            finished.add(id); // a state arriving later is expired
        }
        if (s == null) return false;
        s.cancelled = true;
        s.fail(why);
        if (s.state == null) slots.remove(id, s); // not decoding: nothing else will release it
        else batcher.cancel(id);                  // the batcher ends it at its next step; onStep releases the state
        return true;
    }

    // ---- budget ----

    private synchronized void expireReservations() {
        long now = System.currentTimeMillis();
        reservationExpiry.entrySet().removeIf(e -> {
            if (e.getValue() > now) return false;
            usedBytes -= reservations.remove(e.getKey());
            return true;
        });
    }

    public synchronized long usedBytes() { return usedBytes; }

    private long chargeFor(GenerationSpec spec) {
        long maxLen = spec.getPromptTokensCount() + spec.getGeneratedTokensCount() + spec.getSampling().getMaxNewTokens();
        return StateCodec.serialisedBytes(meshModel.config(), maxLen) * Specs.choices(spec); // a copy of the state per choice
    }

    // ---- the decode loop: one batched step of the engine's continuous batcher at a time ----

    private void runLoop() {
        while (running) {
            try {
                Slot s = batcher.idle() ? joins.poll(100, TimeUnit.MILLISECONDS) : joins.poll();
                for (; s != null; s = joins.poll()) {
                    if (s.cancelled) release(s);
                    else {
                        for (Generation g : s.choices) if (!g.finished()) batcher.add(g); // a choice may end at its first token
                        decoding.add(s);
                    }
                }
                decoding.removeIf(x -> x.generation == null);
                if (batcher.idle()) { activeCount = 0; continue; }
                long t0 = System.nanoTime();
                int b;
                Span step = stepSpan();
                try (Scope ignored = step.makeCurrent()) {
                    b = batcher.step();
                } catch (RuntimeException e) {
                    step.setStatus(StatusCode.ERROR, e.toString());
                    failAll(e);
                    continue;
                } finally {
                    step.end();
                    flushEvents();
                }
                activeCount = batcher.running();
                if (b == 0) continue;
                batchSize.record(b);
                stepSeconds.record((System.nanoTime() - t0) / 1e9);
                stepNanos.add(System.nanoTime() - t0);
                steps.increment();
                stepRows.add(b);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            } catch (Throwable t) {
                LOG.severe("decode loop: " + t);
            }
        }
    }

    /** Hands the events of the step just run to the events thread (one hand-off per step). */
    private void flushEvents() {
        if (stepEvents.isEmpty()) return;
        List<Runnable> batch = new ArrayList<>(stepEvents);
        stepEvents.clear();
        events.execute(() -> { for (Runnable r : batch) r.run(); });
    }

    /**
     * The span of one batched step: a child of the first sequence's decode span (so a lone request's trace holds its
     * steps and their expert calls), linked to the other sequences' spans.
     */
    private Span stepSpan() {
        SpanBuilder b = tracer.spanBuilder("lightmesh.decode step");
        boolean parented = false;
        int links = 0;
        for (Slot x : decoding) {
            Span sp = x.span;
            if (sp == null) continue;
            if (!parented) { b.setParent(Context.root().with(sp)); parented = true; }
            else if (links++ < 32) b.addLink(sp.getSpanContext());
        }
        if (!parented) b.setNoParent();
        return b.setAttribute("lightmesh.batch_size", decoding.size()).startSpan();
    }

    /** A decode step failed: every sequence in the batch is failed and freed (the batcher drops them next step). */
    private void failAll(RuntimeException e) {
        LOG.warning("decode step failed: " + e);
        for (Slot s : slots.values()) {
            if (s.generation == null) continue;
            // expert shards unreachable (RemoteExperts: UNAVAILABLE) stays UNAVAILABLE: the router resumes or answers 503
            s.fail(e instanceof io.grpc.StatusRuntimeException sre && sre.getStatus().getCode() == Status.Code.UNAVAILABLE
                    ? Status.UNAVAILABLE.withDescription("decode step failed: " + sre.getStatus().getDescription())
                    : Status.INTERNAL.withDescription("decode step failed: " + e.getMessage()));
            s.cancelled = true;
            batcher.cancel(s.id);
            release(s);
        }
    }

    /**
     * The batcher's report of one step of one sequence: becomes one event on the request's stream. Events are sent
     * by the events thread, a step's worth at a time, so that the next step's forward pass overlaps their
     * serialisation and writes.
     */
    private void onStep(Generation g, Generation.Step step) {
        Slot s = slots.get(g.id());
        if (s == null || s.generation == null || !s.choices.contains(g)) return; // already failed or released
        if (step.finished() && step.reason() == io.lightmesh.engine.generate.FinishReason.CANCELLED) {
            release(s);
            return;
        }
        if (emit(s, g, step)) release(s);
    }

    /**
     * Emits what one step produced: the token when it became output (eos, which ends the turn, is not), the text
     * it released, and on the last step the finish reason and counts. True when the sequence finished.
     */
    private boolean emit(Slot s, Generation g, Generation.Step step) {
        int c = s.choices.indexOf(g);
        DecodeEvent.Builder e = DecodeEvent.newBuilder().setRequestId(s.id).setChoiceIndex(c).setFirstIndex(s.delivered[c]).setTextDelta(step.text());
        if (g.tokenCount() > s.delivered[c]) {
            e.addTokenIds(step.token());
            if (step.logprob() != null) e.addLogprobs(Specs.logprob(step.logprob()));
            s.delivered[c] = g.tokenCount();
        }
        if (!s.promptLogprobs.isEmpty()) { // the stream's first event
            e.addAllPromptLogprobs(s.promptLogprobs);
            s.promptLogprobs = List.of();
        }
        if (step.finished()) {
            if (s.span != null) s.span.setAttribute("lightmesh.completion_tokens", g.tokenCount()).setAttribute("lightmesh.finish_reason", step.reason().name());
            e.setFinishReason(Specs.finishReason(step.reason())).setMatchedStop(g.matchedStop())
                    .setCompletionTokens(g.tokenCount()).setReasoningTokens(g.thinkingTokens())
                    .setStats(s.stats.setDecodeWorker(settings.workerId()));
        }
        DecodeEvent event = e.build();
        boolean last = step.finished() && --s.open == 0; // the stream ends with its last choice
        if (Thread.currentThread() == loop) stepEvents.add(() -> s.emit(event, last)); // sent after the step, off the loop
        else s.emit(event, last);
        return last;
    }

    // ---- gRPC services ----

    final class TransferService extends StateTransferGrpc.StateTransferImplBase {
        @Override
        public void reserve(ReserveRequest req, StreamObserver<ReserveResponse> out) {
            expireReservations();
            ReserveResponse.Builder r = ReserveResponse.newBuilder();
            synchronized (DecodeWorker.this) {
                Long had = reservations.remove(req.getRequestId());
                if (had != null) usedBytes -= had;
                if (finished.contains(req.getRequestId())) {
                    // finished or cancelled here (a prefill worker took its task again after the router cancelled it):
                    // nothing is held for it, or the room would stay taken until the reservation's TTL, and its state,
                    // if sent, is answered DUPLICATE and committed. Granted, so that the prefill worker neither waits
                    // for room nor marks this worker full.
                    r.setGranted(true).setDetail("request finished or cancelled here: nothing reserved");
                } else if (usedBytes + req.getBytes() <= settings.stateBudgetBytes()) {
                    usedBytes += req.getBytes();
                    reservations.put(req.getRequestId(), req.getBytes());
                    reservationExpiry.put(req.getRequestId(), System.currentTimeMillis() + Math.max(1000, req.getTtlMs()));
                    r.setGranted(true);
                } else {
                    r.setGranted(false).setDetail("budget " + settings.stateBudgetBytes() + " bytes, " + usedBytes + " in use");
                }
                r.setFreeBytes(settings.stateBudgetBytes() - usedBytes);
            }
            out.onNext(r.build());
            out.onCompleted();
        }

        /**
         * One hand-off: the header is checked and its state's room charged to the budget and allocated before any data
         * arrives; each chunk is then written straight into that state (gRPC's inbound flow control holds the sender
         * back while a chunk is being copied). A broken stream fails this call alone (INVALID_ARGUMENT / DATA_LOSS)
         * and frees what it held.
         */
        @Override
        public StreamObserver<StateChunk> send(StreamObserver<StateAck> ack) {
            return new StreamObserver<StateChunk>() {
                StateHeader header;
                StateCodec.Receiver receiver;
                long charged, t0, received;
                boolean answered;
                Context parent;  // the prefill worker's "lightmesh.state send"
                Span receive;

                void endSpan(String outcome, boolean ok, String detail) {
                    if (receive == null) return;
                    receive.setAttribute("lightmesh.ack", outcome).setAttribute("lightmesh.state_bytes", received());
                    if (!ok) receive.setStatus(StatusCode.ERROR, detail);
                    receive.end();
                }

                long received() { return receiver == null ? received : receiver.received(); }

                /** Gives back the budget and the memory of a state that will not be kept. */
                void drop() {
                    if (charged > 0) {
                        synchronized (DecodeWorker.this) { usedBytes -= charged; }
                        charged = 0;
                    }
                    if (receiver != null) { received = receiver.received(); receiver = null; }
                }

                void answer(AckStatus status, String detail) {
                    if (answered) return;
                    answered = true;
                    endSpan(status.name(), status == AckStatus.ACK_STATUS_ACCEPTED || status == AckStatus.ACK_STATUS_DUPLICATE, detail);
                    long bytes = received();
                    if (status != AckStatus.ACK_STATUS_ACCEPTED) drop();
                    receiver = null;
                    ack.onNext(StateAck.newBuilder().setRequestId(header == null ? "" : header.getRequestId()).setStatus(status)
                            .setBytesReceived(bytes).setDetail(detail).build());
                    ack.onCompleted();
                }

                void fail(io.grpc.StatusException e) {
                    if (answered) return;
                    answered = true;
                    drop();
                    endSpan(e.getStatus().getCode().name(), false, e.getStatus().getDescription());
                    LOG.info("state for " + (header == null ? "?" : header.getRequestId()) + " refused: " + e.getStatus());
                    ack.onError(e);
                }

                @Override
                public void onNext(StateChunk c) {
                    if (answered) return;
                    try {
                        switch (c.getPartCase()) {
                            case HEADER -> {
                                if (header != null) throw StateCodec.invalid("a second header");
                                onHeader(c.getHeader());
                            }
                            case DATA -> {
                                if (receiver == null) throw StateCodec.invalid("data before the header");
                                receiver.data(c.getData());
                            }
                            case TRAILER -> {
                                if (receiver == null) throw StateCodec.invalid("trailer before the header");
                                onTrailer(receiver.finish(c.getTrailer()));
                            }
                            default -> throw StateCodec.invalid("empty chunk");
                        }
                    } catch (io.grpc.StatusException e) {
                        fail(e);
                    }
                }

                private void onHeader(StateHeader h) throws io.grpc.StatusException {
                    header = h;
                    t0 = System.nanoTime();
                    parent = Context.current();
                    receive = tracer.spanBuilder("lightmesh.state receive").setSpanKind(SpanKind.SERVER).setParent(parent)
                            .setAttribute("lightmesh.request_id", h.getRequestId()).setAttribute("lightmesh.position", h.getPosition()).startSpan();
                    String id = h.getRequestId();
                    if (!meshModel.fingerprint().equals(h.getModelFingerprint())) {
                        answer(AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE, "model " + h.getModelFingerprint() + " but this worker runs " + meshModel.fingerprint());
                        return;
                    }
                    if (!StateCodec.ENCODING.equals(h.getEncoding())) {
                        answer(AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE, "encoding " + h.getEncoding());
                        return;
                    }
                    GenerationSpec spec = h.getSpec();
                    long context = (long) spec.getPromptTokensCount() + spec.getGeneratedTokensCount();
                    if (h.getPosition() != context) {
                        throw StateCodec.invalid("position " + h.getPosition() + " but the spec has " + context + " tokens of context");
                    }
                    long deadline = spec.getDeadlineUnixMs();
                    if (deadline > 0 && deadline < System.currentTimeMillis()) {
                        answer(AckStatus.ACK_STATUS_REJECTED_EXPIRED, "deadline passed");
                        return;
                    }
                    long charge = chargeFor(spec);
                    synchronized (DecodeWorker.this) {
                        Slot existing = slots.get(id);
                        if (finished.contains(id) || (existing != null && existing.state != null)) {
                            Long held = reservations.remove(id); // never leave room reserved for a state refused here
                            reservationExpiry.remove(id);
                            if (held != null) usedBytes -= held;
                            answer(AckStatus.ACK_STATUS_DUPLICATE, finished.contains(id) ? "finished or cancelled" : "already held");
                            return;
                        }
                        Long reserved = reservations.remove(id);
                        reservationExpiry.remove(id);
                        if (reserved != null) usedBytes -= reserved;
                        if (usedBytes + charge > settings.stateBudgetBytes()) {
                            answer(AckStatus.ACK_STATUS_REJECTED_NO_CAPACITY, "needs " + charge + " bytes, " + (settings.stateBudgetBytes() - usedBytes) + " free");
                            return;
                        }
                        usedBytes += charge;
                        charged = charge;
                    }
                    // the state at its longest, allocated now: what the charge paid for, and no KV growth while decoding
                    long longest = context + spec.getSampling().getMaxNewTokens();
                    int kvCapacity = (int) Math.min(longest, (Integer.MAX_VALUE - 8L) / meshModel.config().kvDim());
                    receiver = new StateCodec.Receiver(h, meshModel.config(), kvCapacity);
                }

                private void onTrailer(SequenceState state) {
                    String id = header.getRequestId();
                    long bytes = receiver.received();
                    Slot s;
                    synchronized (DecodeWorker.this) {
                        if (finished.contains(id)) { answer(AckStatus.ACK_STATUS_REJECTED_EXPIRED, "cancelled"); return; }
                        s = slot(id);
                        if (s.state != null) { answer(AckStatus.ACK_STATUS_DUPLICATE, "already held"); return; }
                        s.spec = header.getSpec();
                        s.state = state;
                        s.charge = charged;
                        int n = Specs.choices(s.spec);
                        s.delivered = new int[n];
                        s.delivered[0] = s.spec.getGeneratedTokensCount();
                        s.open = n;
                        s.promptLogprobs = header.getPromptLogprobsList();
                        s.stats = RequestStats.newBuilder().setQueueUs(header.getQueueUs()).setPrefillUs(header.getPrefillUs())
                                .setCachedTokens(header.getCachedTokens())
                                .setTransferUs((System.nanoTime() - t0) / 1000).setStateBytes(bytes);
                        try {
                            if (header.getOtherChoicesCount() != n - 1) {
                                throw new IllegalArgumentException(n + " choices but first tokens for " + (header.getOtherChoicesCount() + 1));
                            }
                            List<Generation> gs = new ArrayList<>(n);
                            long longest = (long) state.position() + s.spec.getSampling().getMaxNewTokens();
                            for (int c = 0; c < n; c++) { // one copy of the prefilled state per further choice
                                SequenceState cs = c == 0 ? state : io.lightmesh.engine.model.StateFork.copy(state, (int) Math.min(longest, Integer.MAX_VALUE / 2));
                                gs.add(Specs.resume(s.spec, c, cs, meshModel.tokenizer()));
                            }
                            s.choices = gs;
                            s.generation = gs.getFirst();
                        } catch (IllegalArgumentException e) {
                            s.state = null;
                            slots.remove(id, s);
                            answer(AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE, "cannot generate: " + e.getMessage());
                            s.fail(Status.INVALID_ARGUMENT.withDescription(e.getMessage()));
                            return;
                        }
                        s.span = tracer.spanBuilder("lightmesh.decode").setParent(parent)
                                .setAttribute("lightmesh.request_id", id).setAttribute("lightmesh.worker", settings.workerId()).startSpan();
                    }
                    stateBytesReceived.addAndGet(bytes);
                    stateBytes.add(bytes);
                    answer(AckStatus.ACK_STATUS_ACCEPTED, "");
                    // the first new token was drawn by the prefill worker, by the same rules from the same history
                    // (each choice's, with its seed)
                    boolean ended = false;
                    try {
                        for (int c = 0; c < s.choices.size(); c++) {
                            Generation g = s.choices.get(c);
                            Generation.Step first = c == 0
                                    ? g.acceptChosen(header.getNextToken(), header.hasNextTokenLogprob() ? Specs.logprob(header.getNextTokenLogprob()) : null)
                                    : g.acceptChosen(header.getOtherChoices(c - 1).getTokenId(),
                                            header.getOtherChoices(c - 1).hasLogprob() ? Specs.logprob(header.getOtherChoices(c - 1).getLogprob()) : null);
                            ended |= emit(s, g, first);
                        }
                    } catch (IllegalArgumentException e) {
                        s.fail(Status.INTERNAL.withDescription("first token: " + e.getMessage()));
                        release(s);
                        return;
                    }
                    if (ended) release(s);
                    else joins.add(s);
                }

                @Override
                public void onError(Throwable t) {
                    // the sender went away (cancelled, deadline, connection lost): nothing to answer, free what was held
                    if (answered) return;
                    answered = true;
                    drop();
                    endSpan("ABORTED", false, String.valueOf(t));
                }

                @Override
                public void onCompleted() {
                    if (answered) return;
                    fail(receiver == null ? StateCodec.invalid("stream ended without a header") : receiver.truncated());
                }
            };
        }
    }

    final class DecodeService extends DecodeGrpc.DecodeImplBase {
        @Override
        public void generate(DecodeRequest req, StreamObserver<DecodeEvent> out) {
            ServerCallStreamObserver<DecodeEvent> follower = (ServerCallStreamObserver<DecodeEvent>) out;
            String id = req.getRequestId();
            follower.setOnCancelHandler(() -> cancelRequest(id, "follower went away"));
            Slot s;
            synchronized (DecodeWorker.this) {
                if (finished.contains(id) && !slots.containsKey(id)) {
                    out.onError(Status.NOT_FOUND.withDescription("request " + id + " already finished or cancelled here").asRuntimeException());
                    return;
                }
                s = slot(id);
            }
            s.attach(follower);
            long wait = req.getStateWaitMs() > 0 ? req.getStateWaitMs() : settings.stateWaitMs();
            timers.schedule(() -> {
                if (s.state == null && !s.closed) {
                    s.fail(Status.NOT_FOUND.withDescription("no state for " + id + " arrived within " + wait + " ms"));
                    slots.remove(id, s);
                }
            }, wait, TimeUnit.MILLISECONDS);
        }

        @Override
        public void cancel(CancelRequest req, StreamObserver<CancelResponse> out) {
            String reason = req.getReason().isEmpty() ? "cancelled" : req.getReason();
            boolean found = DecodeWorker.this.cancelRequest(req.getRequestId(),
                    (req.getUnavailable() ? Status.UNAVAILABLE : Status.CANCELLED).withDescription(reason));
            out.onNext(CancelResponse.newBuilder().setFound(found).build());
            out.onCompleted();
        }
    }

    final class WorkerService extends WorkerGrpc.WorkerImplBase {
        @Override
        public void describe(DescribeRequest req, StreamObserver<WorkerInfo> out) {
            out.onNext(workerInfo());
            out.onCompleted();
        }
    }

    public WorkerInfo workerInfo() {
        expireReservations();
        int pending;
        synchronized (this) { pending = reservations.size(); }
        return io.lightmesh.mesh.WorkerPath.describe(WorkerInfo.newBuilder(), model)
                .setWorkerId(settings.workerId()).setKind(WorkerKind.WORKER_KIND_DECODE)
                .setAddress(settings.address()).setModelFingerprint(meshModel.fingerprint()).setRemoteExperts(remoteExperts)
                .setLoad(WorkerLoad.newBuilder().setActiveSequences(activeCount + joins.size()).setPendingSequences(pending)
                        .setStateBytesUsed(usedBytes()).setStateBytesBudget(settings.stateBudgetBytes()).setMaxBatch(settings.maxBatch()))
                .build();
    }

    /** The path this worker's engine runs (decode, prefill, experts, micro-batching). */
    public io.lightmesh.engine.model.ForwardPath path() { return model.path(); }

    /** Sequences holding state now (decoding or about to). */
    public int liveSequences() {
        int n = 0;
        for (Slot s : slots.values()) if (s.state != null) n++;
        return n;
    }

    @Override
    public void close() {
        activeGauge.close();
        stateUsedGauge.close();
        stateBudgetGauge.close();
        running = false;
        loop.interrupt();
        events.shutdown();
        timers.shutdownNow();
        for (Slot s : slots.values()) s.fail(Status.UNAVAILABLE.withDescription("decode worker " + settings.workerId() + " is shutting down"));
    }
}
