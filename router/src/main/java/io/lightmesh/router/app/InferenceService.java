package io.lightmesh.router.app;

import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.quarkus.grpc.GrpcService;

/** lightmesh.v1.Inference on Quarkus's gRPC server: RouterCore's implementation (RouterNode), traced and offloaded. */
@GrpcService
public class InferenceService implements BindableService {
    private final DeferredServices services;

    InferenceService(DeferredServices services) { this.services = services; }

    @Override
    public ServerServiceDefinition bindService() { return services.bind(InferenceGrpc.getServiceDescriptor()); }
}
