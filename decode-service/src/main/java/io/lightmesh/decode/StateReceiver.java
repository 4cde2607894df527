package io.lightmesh.decode;

import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.generate.Generation;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateFork;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.Specs;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.proto.v1.AckStatus;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.RequestStats;
import io.lightmesh.proto.v1.StateAck;
import io.lightmesh.proto.v1.StateChunk;
import io.lightmesh.proto.v1.StateHeader;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;

import java.util.ArrayList;
import java.util.List;
import java.util.logging.Logger;

/**
 * One hand-off (StateTransfer.Send): the header is checked and its state's room charged to the budget and allocated
 * before any data arrives; each chunk is then written straight into that state (gRPC's inbound flow control holds the
 * sender back while a chunk is being copied). A broken stream fails this call alone (INVALID_ARGUMENT / DATA_LOSS)
 * and frees what it held. An accepted state becomes its request's sequence: its first tokens (drawn by the prefill
 * worker) are emitted and it joins the decode loop.
 *
 * <p>Answered once: the ack (or the error) ends the call, and whatever arrives after it is ignored.
 */
final class StateReceiver implements StreamObserver<StateChunk> {
    private static final Logger LOG = Logger.getLogger(StateReceiver.class.getName());

    private final String workerId;
    private final MeshModel meshModel;
    private final SlotTable slots;
    private final DecodeLoop loop;
    private final DecodeMetrics metrics;
    private final Tracer tracer;
    private final StreamObserver<StateAck> ack;

    private StateHeader header;
    private StateCodec.Receiver receiver;
    private long charged, t0, received;
    private boolean answered;
    private Context parent;  // the prefill worker's "lightmesh.state send"
    private Span receive;

    StateReceiver(String workerId, MeshModel meshModel, SlotTable slots, DecodeLoop loop, DecodeMetrics metrics, Tracer tracer,
                  StreamObserver<StateAck> ack) {
        this.workerId = workerId;
        this.meshModel = meshModel;
        this.slots = slots;
        this.loop = loop;
        this.metrics = metrics;
        this.tracer = tracer;
        this.ack = ack;
    }

    private void endSpan(String outcome, boolean ok, String detail) {
        if (receive == null) return;
        receive.setAttribute("lightmesh.ack", outcome).setAttribute("lightmesh.state_bytes", received());
        if (!ok) receive.setStatus(StatusCode.ERROR, detail);
        receive.end();
    }

    private long received() { return receiver == null ? received : receiver.received(); }

    /** Gives back the budget and the memory of a state that will not be kept. */
    private void drop() {
        if (charged > 0) {
            slots.refund(charged);
            charged = 0;
        }
        if (receiver != null) { received = receiver.received(); receiver = null; }
    }

    private void answer(AckStatus status, String detail) {
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

    private void fail(StatusException e) {
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
        } catch (StatusException e) {
            fail(e);
        }
    }

    private void onHeader(StateHeader h) throws StatusException {
        header = h;
        t0 = System.nanoTime();
        parent = Context.current();
        receive = tracer.spanBuilder("lightmesh.state receive").setSpanKind(SpanKind.SERVER).setParent(parent)
                .setAttribute("lightmesh.request_id", h.getRequestId()).setAttribute("lightmesh.position", h.getPosition()).startSpan();
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
        SlotTable.Admission admission = slots.admit(h.getRequestId(), charge);
        if (!admission.charged()) {
            answer(admission.status(), admission.detail());
            return;
        }
        charged = charge;
        // the state at its longest, allocated now: what the charge paid for, and no KV growth while decoding
        long longest = context + spec.getSampling().getMaxNewTokens();
        int kvCapacity = (int) Math.min(longest, (Integer.MAX_VALUE - 8L) / meshModel.config().kvDim());
        receiver = new StateCodec.Receiver(h, meshModel.config(), kvCapacity);
    }

    /**
     * What a sequence is charged: the serialised size of its state at its longest (position + max_new_tokens), once
     * per choice (a request asking for n samples decodes n copies of its prefilled state), so that an accepted
     * sequence never outgrows the budget.
     */
    private long chargeFor(GenerationSpec spec) {
        long maxLen = spec.getPromptTokensCount() + spec.getGeneratedTokensCount() + spec.getSampling().getMaxNewTokens();
        return StateCodec.serialisedBytes(meshModel.config(), maxLen) * Specs.choices(spec); // a copy of the state per choice
    }

    private void onTrailer(SequenceState state) {
        String id = header.getRequestId();
        long bytes = receiver.received();
        SlotTable.Claim claim = slots.claim(id, state, charged);
        if (claim.slot() == null) { answer(claim.status(), claim.detail()); return; }
        Slot s = claim.slot();
        s.spec = header.getSpec();
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
                SequenceState cs = c == 0 ? state : StateFork.copy(state, (int) Math.min(longest, Integer.MAX_VALUE / 2));
                gs.add(Specs.resume(s.spec, c, cs, meshModel.tokenizer()));
            }
            s.choices = gs;
            s.generation = gs.getFirst();
        } catch (IllegalArgumentException e) {
            slots.unclaim(s);
            answer(AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE, "cannot generate: " + e.getMessage());
            s.fail(Status.INVALID_ARGUMENT.withDescription(e.getMessage()));
            return;
        }
        s.span = tracer.spanBuilder("lightmesh.decode").setParent(parent)
                .setAttribute("lightmesh.request_id", id).setAttribute("lightmesh.worker", workerId).startSpan();
        metrics.stateReceived(bytes);
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
                ended |= loop.emit(s, g, first);
            }
        } catch (IllegalArgumentException e) {
            s.fail(Status.INTERNAL.withDescription("first token: " + e.getMessage()));
            slots.release(s);
            return;
        }
        if (ended) slots.release(s);
        else loop.join(s);
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
}
