package io.lightmesh.prefill;

import com.google.common.util.concurrent.ListenableFuture;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.generate.Generation;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.Specs;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.proto.v1.AckStatus;
import io.lightmesh.proto.v1.CancelRequest;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.lightmesh.proto.v1.FirstToken;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.PrefillTask;
import io.lightmesh.proto.v1.ReserveRequest;
import io.lightmesh.proto.v1.ReserveResponse;
import io.lightmesh.proto.v1.StateAck;
import io.lightmesh.proto.v1.StateHeader;
import io.lightmesh.proto.v1.StateTransferGrpc;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Scope;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * A prefill worker's side of its decode workers: reserves room for a record's state on its decode worker, ships the
 * state with its first tokens (StateTransfer), tells the decode worker when a request cannot be prefilled now
 * (Decode.Cancel, UNAVAILABLE), and decides from each answer whether the record's offset may be committed. Remembers
 * the requests (id # attempt) shipped or given up, so that a redelivered copy is dropped.
 */
final class StateShipper implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(StateShipper.class.getName());
    /** A decode target unreachable this long is given up: its request was resumed by the router or is lost. */
    private static final long GIVE_UP_MS = 10_000;

    private final MeshModel meshModel;
    private final int chunkBytes;
    private final long reserveTtlMs;
    private final PrefillMetrics metrics;
    private final Tracer tracer;
    private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    /** Keys (request id # attempt) shipped or given up; the oldest forgotten past 100,000. */
    private final Set<String> done = Collections.newSetFromMap(new LinkedHashMap<>(1024, 0.75f, false) {
        @Override protected boolean removeEldestEntry(Map.Entry<String, Boolean> e) { return size() > 100_000; }
    });
    /** Decode targets whose last answer to a reservation was a refusal. */
    private final Set<String> refusedBy = ConcurrentHashMap.newKeySet();
    private final Map<String, Long> unreachableSince = new ConcurrentHashMap<>();

    StateShipper(MeshModel meshModel, int chunkBytes, long reserveTtlMs, PrefillMetrics metrics, Tracer tracer) {
        this.meshModel = meshModel;
        this.chunkBytes = chunkBytes;
        this.reserveTtlMs = reserveTtlMs;
        this.metrics = metrics;
        this.tracer = tracer;
    }

    /** Whether this copy of a request (id # attempt) was shipped or given up already. */
    boolean done(String key) { return done.contains(key); }

    /**
     * Asks the job's decode worker to reserve room for its state while it is prefilled (one round trip saved); after
     * a refusal by this target, waits for the answer first, so that a full decode worker does not make this one
     * prefill in vain (the job is then to be taken again). Sets the job's commit when it is decided already.
     */
    void reserve(PrefillJob j) {
        GenerationSpec spec = j.task.getSpec();
        String id = spec.getRequestId();
        try {
            long need = StateCodec.serialisedBytes(meshModel.config(), j.context.length + (long) spec.getSampling().getMaxNewTokens())
                    * Specs.choices(spec); // the decode worker holds a copy of the state per choice
            j.reservation = StateTransferGrpc.newFutureStub(channel(j.task.getDecodeTarget())).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .reserve(ReserveRequest.newBuilder().setRequestId(id).setBytes(need).setTtlMs((int) reserveTtlMs).build());
            if (refusedBy.contains(j.task.getDecodeTarget()) && !granted(j.reservation, j.task, id)) j.commit = false;
        } catch (StatusRuntimeException e) {
            j.commit = unreachable(j, e);
        }
    }

    /** Draws the first token and ships the state to the record's decode worker; true when the offset may be committed. */
    boolean ship(PrefillJob j) {
        GenerationSpec spec = j.task.getSpec();
        String id = spec.getRequestId();
        try {
            // each choice's first token, drawn by the engine's rules with the choice's seed from the same logits
            Generation.Step first = Specs.resume(spec, j.state, meshModel.tokenizer()).accept(j.logits);
            if (!granted(j.reservation, j.task, id)) return false;
            StateHeader.Builder h = StateHeader.newBuilder().setRequestId(id).setModelFingerprint(meshModel.fingerprint())
                    .setNextToken(first.token()).setSpec(spec).setQueueUs(j.queueUs).setPrefillUs(j.prefillUs)
                    .addAllPromptLogprobs(j.promptLogprobs).setCachedTokens(j.cachedTokens);
            if (first.logprob() != null) h.setNextTokenLogprob(Specs.logprob(first.logprob()));
            for (int c = 1; c < Specs.choices(spec); c++) {
                Generation.Step other = Specs.resume(spec, c, null, meshModel.tokenizer()).accept(j.logits);
                FirstToken.Builder f = FirstToken.newBuilder().setTokenId(other.token());
                if (other.logprob() != null) f.setLogprob(Specs.logprob(other.logprob()));
                h.addOtherChoices(f);
            }
            StateCodec.Sender chunks = StateCodec.sender(h, j.state, chunkBytes);
            Span send = tracer.spanBuilder("lightmesh.state send").setSpanKind(SpanKind.CLIENT)
                    .setAttribute("lightmesh.decode_target", j.task.getDecodeTarget()).setAttribute("lightmesh.state_bytes", chunks.totalBytes()).startSpan();
            StateAck ack;
            try (Scope s = send.makeCurrent()) { // the decode worker's spans continue from here (gRPC metadata)
                ack = StateCodec.send(StateTransferGrpc.newStub(channel(j.task.getDecodeTarget())), chunks);
                send.setAttribute("lightmesh.ack", ack.getStatus().name());
            } catch (RuntimeException e) {
                send.setStatus(StatusCode.ERROR, e.toString());
                throw e;
            } finally {
                send.end();
            }
            metrics.shipped(chunks.sentBytes());
            AckStatus st = ack.getStatus();
            if (st == AckStatus.ACK_STATUS_ACCEPTED || st == AckStatus.ACK_STATUS_DUPLICATE || st == AckStatus.ACK_STATUS_REJECTED_EXPIRED
                    || st == AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE) {
                if (st == AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE) LOG.severe("state for " + id + " rejected: " + ack.getDetail());
                done.add(j.key);
                return true;
            }
            LOG.info("state for " + id + " not accepted (" + st + "): " + ack.getDetail());
            return false;
        } catch (IllegalArgumentException e) {
            drop(j, e);
            return true;
        } catch (StatusRuntimeException e) {
            return unreachable(j, e);
        }
    }

    /**
     * The request cannot be prefilled now: its decode worker fails its Generate call with UNAVAILABLE (the router
     * resumes it or answers 503 at once), and the record is committed. When the decode worker cannot be told, the
     * record is taken again later.
     */
    void unavailable(PrefillJob j, Status cause) {
        String id = j.task.getSpec().getRequestId();
        try {
            DecodeGrpc.newBlockingStub(channel(j.task.getDecodeTarget())).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .cancel(CancelRequest.newBuilder().setRequestId(id).setUnavailable(true)
                            .setReason("prefill failed: " + cause.getDescription()).build());
            done.add(j.key);
            j.commit = true;
        } catch (StatusRuntimeException e) {
            LOG.info("cannot fail " + id + " on " + j.task.getDecodeTarget() + ": " + e.getStatus());
            j.commit = false;
        }
        j.state = null;
    }

    /** A record no worker can process (the router validates, so a bug or a foreign producer): committed, never retried. */
    void drop(PrefillJob j, IllegalArgumentException e) {
        LOG.severe("dropping request " + j.key + ": " + e.getMessage());
        done.add(j.key);
        j.commit = true;
        j.state = null;
    }

    /** A failed call to the decode worker: whether to commit (drop this copy) or take the record again later. */
    private boolean unreachable(PrefillJob j, StatusRuntimeException e) {
        String id = j.task.getSpec().getRequestId();
        if (e.getStatus().getCode() == Status.Code.INVALID_ARGUMENT) {
            // the decode worker refused the stream as malformed: sending it again cannot help (a bug); drop it
            LOG.severe("state for " + id + " refused by " + j.task.getDecodeTarget() + ": " + e.getStatus());
            done.add(j.key);
            return true;
        }
        // DATA_LOSS (damaged in transit): send again later. Otherwise the decode worker is gone: the router re-queues
        // the request elsewhere when it notices; drop this copy once unreachable long enough
        LOG.info("decode worker " + j.task.getDecodeTarget() + " unreachable for " + id + ": " + e.getStatus());
        return e.getStatus().getCode() == Status.Code.UNAVAILABLE && unreachableLong(j.task);
    }

    /** Waits for a reservation's answer; false (and the target remembered as full) when refused. */
    private boolean granted(ListenableFuture<ReserveResponse> reservation, PrefillTask task, String id) {
        ReserveResponse rr;
        try {
            rr = reservation.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while reserving", e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof StatusRuntimeException s) throw s;
            throw new IllegalStateException(e.getCause());
        }
        if (rr.getGranted()) {
            refusedBy.remove(task.getDecodeTarget());
            return true;
        }
        refusedBy.add(task.getDecodeTarget());
        LOG.fine("decode " + task.getDecodeTarget() + " has no room for " + id + ": " + rr.getDetail());
        return false;
    }

    /** Whether this copy's decode target has been unreachable for {@link #GIVE_UP_MS} (counted from its first failure). */
    private boolean unreachableLong(PrefillTask task) {
        long now = System.currentTimeMillis();
        long since = unreachableSince.computeIfAbsent(task.getSpec().getRequestId() + "#" + task.getAttempt(), k -> now);
        return now - since > GIVE_UP_MS;
    }

    private ManagedChannel channel(String target) { return channels.computeIfAbsent(target, Grpc::channel); }

    @Override
    public void close() { for (ManagedChannel c : channels.values()) Grpc.shutdown(c); }
}
