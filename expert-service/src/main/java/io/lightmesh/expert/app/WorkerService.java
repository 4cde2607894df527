package io.lightmesh.expert.app;

import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.quarkus.grpc.GrpcService;

/** lightmesh.v1.Worker on Quarkus's gRPC server: the ExpertShard's implementation once it is built (ExpertNode). */
@GrpcService
public class WorkerService implements BindableService {
    private final DeferredServices services;

    WorkerService(DeferredServices services) { this.services = services; }

    @Override
    public ServerServiceDefinition bindService() { return services.bind(WorkerGrpc.getServiceDescriptor()); }
}
