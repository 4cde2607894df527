package io.lightmesh.decode;

import io.grpc.BindableService;
import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.mesh.StopRules;
import io.lightmesh.mesh.TokenPicker;
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
 * A decode worker: accepts sequence states within a byte budget (StateTransfer), runs them with continuous
 * batching (sequences join and leave the batch between steps), and streams their tokens to whoever follows them
 * (Decode.Generate). A sequence's state is freed when it finishes, is cancelled, or fails.
 *
 * <p>Budget: a sequence is charged the serialised size of its state at its longest (position + max_new_tokens),
 * so an accepted sequence never outgrows the budget.
 */
public final class DecodeWorker implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(DecodeWorker.class.getName());

    /** Settings of a decode worker (config keys lightmesh.decode.*). */
    public record Settings(String workerId, String address, long stateBudgetBytes, int maxBatch, long stateWaitMs) {}

    private final Settings settings;
    private final MeshModel meshModel;
    private final MiniMaxModel model; // local or remote experts
    private final boolean remoteExperts;
    private final StopRules rules;
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

    public DecodeWorker(Settings settings, MeshModel meshModel, MiniMaxModel model, boolean remoteExperts) {
        this.settings = settings;
        this.meshModel = meshModel;
        this.model = model;
        this.remoteExperts = remoteExperts;
        this.rules = new StopRules(meshModel.eosId());
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
        SequenceState state;
        long charge;
        int nextInput, generated, firstIndex;
        long seed;
        volatile boolean cancelled;
        RequestStats.Builder stats;

        Slot(String id) { this.id = id; }

        synchronized void attach(ServerCallStreamObserver<DecodeEvent> f) {
            follower = f;
            while (!backlog.isEmpty()) f.onNext(backlog.poll());
            if (closed) finishFollower();
        }

        synchronized void emit(DecodeEvent e, boolean last) {
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
        s.state = null;
        slots.remove(s.id, s);
    }

    public boolean cancelRequest(String id, String reason) {
        Slot s = slots.get(id);
        synchronized (this) {
            Long r = reservations.remove(id);
            if (r != null) { usedBytes -= r; reservationExpiry.remove(id); }
            finished.add(id); // a state arriving later is expired
        }
        if (s == null) return false;
        s.cancelled = true;
        s.fail(Status.CANCELLED.withDescription(reason));
        if (s.state == null) slots.remove(id, s); // not decoding: nothing else will release it
        // else the decode loop drops it before its next step and releases the state
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
        return StateCodec.serialisedBytes(meshModel.config(), maxLen);
    }

    // ---- the decode loop: one batched step at a time ----

    private void runLoop() {
        List<Slot> active = new ArrayList<>();
        while (running) {
            try {
                if (active.isEmpty()) {
                    Slot s = joins.poll(100, TimeUnit.MILLISECONDS);
                    if (s != null) active.add(s);
                }
                while (active.size() < settings.maxBatch()) {
                    Slot s = joins.poll();
                    if (s == null) break;
                    active.add(s);
                }
                active.removeIf(s -> {
                    if (!s.cancelled && (s.follower == null || !s.follower.isCancelled())) return false;
                    release(s);
                    return true;
                });
                activeCount = active.size();
                if (active.isEmpty()) continue;
                List<SequenceState> states = new ArrayList<>(active.size());
                int[] tokens = new int[active.size()];
                for (int i = 0; i < tokens.length; i++) {
                    states.add(active.get(i).state);
                    tokens[i] = active.get(i).nextInput;
                }
                long t0 = System.nanoTime();
                float[][] logits;
                try {
                    logits = model.decode(states, tokens);
                } catch (RuntimeException e) {
                    LOG.warning("decode step failed for " + tokens.length + " sequences: " + e);
                    for (Slot s : active) {
                        s.fail(Status.INTERNAL.withDescription("decode step failed: " + e.getMessage()));
                        release(s);
                    }
                    active.clear();
                    continue;
                }
                stepNanos.add(System.nanoTime() - t0);
                steps.increment();
                stepRows.add(tokens.length);
                for (int i = active.size() - 1; i >= 0; i--) {
                    Slot s = active.get(i);
                    int token = TokenPicker.pick(logits[i], s.spec.getSampling(), s.seed, s.generated);
                    if (accept(s, token)) {
                        active.remove(i);
                        release(s);
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            } catch (Throwable t) {
                LOG.severe("decode loop: " + t);
            }
        }
    }

    /** Emits one generated token; true when the sequence is finished (the caller releases it). */
    private boolean accept(Slot s, int token) {
        int index = s.generated++;
        int total = s.generated; // tokens generated for the request, resumed ones included
        FinishReason f = rules.after(s.spec, token, total);
        boolean last = f != FinishReason.FINISH_REASON_UNSPECIFIED;
        DecodeEvent.Builder e = DecodeEvent.newBuilder().setRequestId(s.id).setFirstIndex(index).addTokenIds(token);
        if (last) {
            e.setFinishReason(f).setCompletionTokens(total).setStats(s.stats.setDecodeWorker(settings.workerId()));
        }
        s.emit(e.build(), last);
        s.nextInput = token;
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
                if (usedBytes + req.getBytes() <= settings.stateBudgetBytes()) {
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

        @Override
        public StreamObserver<StateChunk> send(StreamObserver<StateAck> ack) {
            return new StreamObserver<StateChunk>() {
                StateHeader header;
                StateCodec.Assembler assembler;
                long charged, t0;
                boolean answered;

                void answer(AckStatus status, String detail) {
                    if (answered) return;
                    answered = true;
                    if (status != AckStatus.ACK_STATUS_ACCEPTED && charged > 0) {
                        synchronized (DecodeWorker.this) { usedBytes -= charged; }
                        charged = 0;
                    }
                    ack.onNext(StateAck.newBuilder().setRequestId(header == null ? "" : header.getRequestId()).setStatus(status)
                            .setBytesReceived(assembler == null ? 0 : assembler.received()).setDetail(detail).build());
                    ack.onCompleted();
                }

                @Override
                public void onNext(StateChunk c) {
                    if (answered) return;
                    switch (c.getPartCase()) {
                        case HEADER -> onHeader(c.getHeader());
                        case DATA -> {
                            if (assembler == null) { answer(AckStatus.ACK_STATUS_REJECTED_CORRUPT, "data before header"); return; }
                            try { assembler.data(c.getData()); }
                            catch (IllegalArgumentException e) { answer(AckStatus.ACK_STATUS_REJECTED_CORRUPT, e.getMessage()); }
                        }
                        case TRAILER -> onTrailer(c);
                        default -> answer(AckStatus.ACK_STATUS_REJECTED_CORRUPT, "empty chunk");
                    }
                }

                private void onHeader(StateHeader h) {
                    header = h;
                    t0 = System.nanoTime();
                    String id = h.getRequestId();
                    if (!meshModel.fingerprint().equals(h.getModelFingerprint())) {
                        answer(AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE, "model " + h.getModelFingerprint() + " but this worker runs " + meshModel.fingerprint());
                        return;
                    }
                    if (!StateCodec.ENCODING.equals(h.getEncoding())) {
                        answer(AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE, "encoding " + h.getEncoding());
                        return;
                    }
                    long deadline = h.getSpec().getDeadlineUnixMs();
                    if (deadline > 0 && deadline < System.currentTimeMillis()) {
                        answer(AckStatus.ACK_STATUS_REJECTED_EXPIRED, "deadline passed");
                        return;
                    }
                    long charge = chargeFor(h.getSpec());
                    synchronized (DecodeWorker.this) {
                        Slot existing = slots.get(id);
                        if (finished.contains(id) || (existing != null && existing.state != null)) {
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
                    assembler = new StateCodec.Assembler(h);
                }

                private void onTrailer(StateChunk c) {
                    if (assembler == null) { answer(AckStatus.ACK_STATUS_REJECTED_CORRUPT, "trailer before header"); return; }
                    String bad = assembler.verify(c.getTrailer());
                    if (bad != null) { answer(AckStatus.ACK_STATUS_REJECTED_CORRUPT, bad); return; }
                    SequenceState state;
                    try {
                        state = assembler.state(meshModel.config());
                    } catch (Exception e) {
                        answer(AckStatus.ACK_STATUS_REJECTED_CORRUPT, "unreadable state: " + e.getMessage());
                        return;
                    }
                    stateBytesReceived.addAndGet(assembler.received());
                    String id = header.getRequestId();
                    Slot s;
                    synchronized (DecodeWorker.this) {
                        if (finished.contains(id)) { answer(AckStatus.ACK_STATUS_REJECTED_EXPIRED, "cancelled"); return; }
                        s = slot(id);
                        if (s.state != null) { answer(AckStatus.ACK_STATUS_DUPLICATE, "already held"); return; }
                        s.spec = header.getSpec();
                        s.state = state;
                        s.charge = charged;
                        s.seed = s.spec.getSampling().hasSeed() ? s.spec.getSampling().getSeed() : 0L;
                        s.generated = s.spec.getGeneratedTokensCount();
                        s.nextInput = -1;
                        s.stats = RequestStats.newBuilder().setQueueUs(header.getQueueUs()).setPrefillUs(header.getPrefillUs())
                                .setTransferUs((System.nanoTime() - t0) / 1000).setStateBytes(assembler.received());
                    }
                    answer(AckStatus.ACK_STATUS_ACCEPTED, "");
                    // the first new token was drawn by the prefill worker
                    if (accept(s, header.getNextToken())) release(s);
                    else joins.add(s);
                }

                @Override
                public void onError(Throwable t) {
                    if (charged > 0) {
                        synchronized (DecodeWorker.this) { usedBytes -= charged; }
                        charged = 0;
                    }
                }

                @Override
                public void onCompleted() {
                    if (!answered) answer(AckStatus.ACK_STATUS_REJECTED_CORRUPT, "stream ended without a trailer");
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
            boolean found = DecodeWorker.this.cancelRequest(req.getRequestId(), req.getReason().isEmpty() ? "cancelled" : req.getReason());
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
        return WorkerInfo.newBuilder().setWorkerId(settings.workerId()).setKind(WorkerKind.WORKER_KIND_DECODE)
                .setAddress(settings.address()).setModelFingerprint(meshModel.fingerprint()).setRemoteExperts(remoteExperts)
                .setLoad(WorkerLoad.newBuilder().setActiveSequences(activeCount + joins.size()).setPendingSequences(pending)
                        .setStateBytesUsed(usedBytes()).setStateBytesBudget(settings.stateBudgetBytes()).setMaxBatch(settings.maxBatch()))
                .build();
    }

    /** Sequences holding state now (decoding or about to). */
    public int liveSequences() {
        int n = 0;
        for (Slot s : slots.values()) if (s.state != null) n++;
        return n;
    }

    @Override
    public void close() {
        running = false;
        loop.interrupt();
        timers.shutdownNow();
        for (Slot s : slots.values()) s.fail(Status.UNAVAILABLE.withDescription("decode worker " + settings.workerId() + " is shutting down"));
    }
}
