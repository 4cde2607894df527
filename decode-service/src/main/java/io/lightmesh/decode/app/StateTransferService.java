package io.lightmesh.decode.app;

import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.proto.v1.StateTransferGrpc;
import io.quarkus.grpc.GrpcService;

/** lightmesh.v1.StateTransfer on Quarkus's gRPC server: the DecodeWorker's implementation once it is built (DecodeNode). */
@GrpcService
public class StateTransferService implements BindableService {
    private final DeferredServices services;

    StateTransferService(DeferredServices services) { this.services = services; }

    @Override
    public ServerServiceDefinition bindService() { return services.bind(StateTransferGrpc.getServiceDescriptor()); }
}
