package io.lightmesh.decode;

import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;

import java.util.function.Supplier;

/** lightmesh.v1.Worker of a decode worker: Describe answers who it is and its load, read anew at each call. */
final class WorkerImpl extends WorkerGrpc.WorkerImplBase {
    private final Supplier<WorkerInfo> info;

    WorkerImpl(Supplier<WorkerInfo> info) { this.info = info; }

    @Override
    public void describe(DescribeRequest req, StreamObserver<WorkerInfo> out) {
        out.onNext(info.get());
        out.onCompleted();
    }
}
