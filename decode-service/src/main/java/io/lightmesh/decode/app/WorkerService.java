package io.lightmesh.decode.app;

import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.quarkus.grpc.GrpcService;

/** lightmesh.v1.Worker on Quarkus's gRPC server: the DecodeWorker's implementation once it is built (DecodeNode). */
@GrpcService
public class WorkerService implements BindableService {
    private final DeferredServices services;

    WorkerService(DeferredServices services) { this.services = services; }

    @Override
    public ServerServiceDefinition bindService() { return services.bind(WorkerGrpc.getServiceDescriptor()); }
}
