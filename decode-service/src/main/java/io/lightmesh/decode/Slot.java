package io.lightmesh.decode;

import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.lightmesh.engine.generate.Generation;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.proto.v1.DecodeEvent;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.RequestStats;
import io.lightmesh.proto.v1.TokenLogprob;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.StatusCode;

import java.util.ArrayDeque;
import java.util.List;

/**
 * One request's place in a decode worker: its follower (the router's Decode.Generate stream), its sequence once the
 * state arrived, and the events not yet delivered. A follower may attach before or after the state arrives; events
 * emitted before it attaches wait in the backlog. Once closed (last event, failure or cancel) nothing more is sent.
 */
final class Slot {
    final String id;
    private ServerCallStreamObserver<DecodeEvent> follower;
    private final ArrayDeque<DecodeEvent> backlog = new ArrayDeque<>();
    boolean closed;           // last event emitted or failed
    Status failure;           // when closed by an error
    // the sequence (null until its state arrives)
    GenerationSpec spec;
    volatile SequenceState state;
    Generation generation;    // choice 0 (null when not decoding)
    List<Generation> choices = List.of(); // every choice, index order (sampling.n; one copy of the state each)
    long charge;              // budget bytes charged for it (guarded by the SlotTable)
    int[] delivered;          // per choice: tokens generated so far (a resume's earlier ones included)
    int open;                 // choices not finished yet
    List<TokenLogprob> promptLogprobs = List.of(); // sent with the first event, then dropped
    volatile boolean cancelled;
    RequestStats.Builder stats;
    Span span;                // "lightmesh.decode": from the state's arrival to the sequence's end

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

    /** Drops the sequence: device memory back now (not when the GC gets to it), for the state and its forks. */
    void discardSequence() {
        SequenceState done = state;
        if (done != null) done.discardDevice();
        for (Generation g : choices) if (g.state() != null && g.state() != done) g.state().discardDevice(); // the forks
        state = null;
        generation = null;
        choices = List.of();
    }

    /** Ends the "lightmesh.decode" span, once; an error status when the slot failed. */
    void endSpan() {
        Span s = span;
        if (s == null) return;
        span = null;
        if (failure != null) s.setStatus(StatusCode.ERROR, failure.toString());
        s.end();
    }
}
