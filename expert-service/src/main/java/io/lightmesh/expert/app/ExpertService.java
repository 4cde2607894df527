package io.lightmesh.expert.app;

import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.quarkus.grpc.GrpcService;

/** lightmesh.v1.Expert on Quarkus's gRPC server: the ExpertShard's implementation once it is built (ExpertNode). */
@GrpcService
public class ExpertService implements BindableService {
    private final DeferredServices services;

    ExpertService(DeferredServices services) { this.services = services; }

    @Override
    public ServerServiceDefinition bindService() { return services.bind(ExpertGrpc.getServiceDescriptor()); }
}
