package io.lightmesh.decode;

import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.ReserveRequest;
import io.lightmesh.proto.v1.ReserveResponse;
import io.lightmesh.proto.v1.StateAck;
import io.lightmesh.proto.v1.StateChunk;
import io.lightmesh.proto.v1.StateTransferGrpc;

import java.util.function.Function;

/**
 * lightmesh.v1.StateTransfer of a decode worker: prefill workers reserve room in its budget ({@link SlotTable#reserve})
 * and hand their sequences' states over, one {@link StateReceiver} a stream.
 */
final class StateTransferImpl extends StateTransferGrpc.StateTransferImplBase {
    private final SlotTable slots;
    private final Function<StreamObserver<StateAck>, StateReceiver> receivers;

    /** @param receivers a new receiver for a hand-off, answering on the ack stream it is given */
    StateTransferImpl(SlotTable slots, Function<StreamObserver<StateAck>, StateReceiver> receivers) {
        this.slots = slots;
        this.receivers = receivers;
    }

    @Override
    public void reserve(ReserveRequest req, StreamObserver<ReserveResponse> out) {
        out.onNext(slots.reserve(req.getRequestId(), req.getBytes(), req.getTtlMs()));
        out.onCompleted();
    }

    @Override
    public StreamObserver<StateChunk> send(StreamObserver<StateAck> ack) { return receivers.apply(ack); }
}
