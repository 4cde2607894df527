package io.lightmesh.decode.app;

import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.quarkus.grpc.GrpcService;

/** lightmesh.v1.Decode on Quarkus's gRPC server: the DecodeWorker's implementation once it is built (DecodeNode). */
@GrpcService
public class DecodeService implements BindableService {
    private final DeferredServices services;

    DecodeService(DeferredServices services) { this.services = services; }

    @Override
    public ServerServiceDefinition bindService() { return services.bind(DecodeGrpc.getServiceDescriptor()); }
}
