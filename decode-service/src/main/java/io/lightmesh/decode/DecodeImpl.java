package io.lightmesh.decode;

import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.CancelRequest;
import io.lightmesh.proto.v1.CancelResponse;
import io.lightmesh.proto.v1.DecodeEvent;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.lightmesh.proto.v1.DecodeRequest;

import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * lightmesh.v1.Decode of a decode worker: the router follows a request's tokens (Generate; the stream may open before
 * the state arrives, and fails NOT_FOUND when none arrives in time) and cancels requests (Cancel).
 */
final class DecodeImpl extends DecodeGrpc.DecodeImplBase {
    private final SlotTable slots;
    private final DecodeLoop loop;
    private final ScheduledExecutorService timers;
    private final long stateWaitMs;

    /** @param stateWaitMs how long a follower waits for its state when its request does not say */
    DecodeImpl(SlotTable slots, DecodeLoop loop, ScheduledExecutorService timers, long stateWaitMs) {
        this.slots = slots;
        this.loop = loop;
        this.timers = timers;
        this.stateWaitMs = stateWaitMs;
    }

    @Override
    public void generate(DecodeRequest req, StreamObserver<DecodeEvent> out) {
        ServerCallStreamObserver<DecodeEvent> follower = (ServerCallStreamObserver<DecodeEvent>) out;
        String id = req.getRequestId();
        follower.setOnCancelHandler(() -> loop.cancel(id, Status.CANCELLED.withDescription("follower went away")));
        Slot s = slots.follow(id);
        if (s == null) {
            out.onError(Status.NOT_FOUND.withDescription("request " + id + " already finished or cancelled here").asRuntimeException());
            return;
        }
        s.attach(follower);
        long wait = req.getStateWaitMs() > 0 ? req.getStateWaitMs() : stateWaitMs;
        timers.schedule(() -> {
            if (s.state == null && !s.closed) {
                s.fail(Status.NOT_FOUND.withDescription("no state for " + id + " arrived within " + wait + " ms"));
                slots.forget(s);
            }
        }, wait, TimeUnit.MILLISECONDS);
    }

    @Override
    public void cancel(CancelRequest req, StreamObserver<CancelResponse> out) {
        String reason = req.getReason().isEmpty() ? "cancelled" : req.getReason();
        boolean found = loop.cancel(req.getRequestId(), (req.getUnavailable() ? Status.UNAVAILABLE : Status.CANCELLED).withDescription(reason));
        out.onNext(CancelResponse.newBuilder().setFound(found).build());
        out.onCompleted();
    }
}
