package io.lightmesh.router.app;

import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.proto.v1.PlacementGrpc;
import io.quarkus.grpc.GrpcService;

/**
 * lightmesh.v1.Placement on Quarkus's gRPC server: the expert placement controller's Watch and ReportUnreachable
 * (RouterNode), for the prefill and decode workers (lightmesh.placement). An internal service: not behind the API
 * key (workers do not hold it); UNAVAILABLE when the router has no expert shards.
 */
@GrpcService
public class PlacementGrpcService implements BindableService {
    private final DeferredServices services;

    PlacementGrpcService(DeferredServices services) { this.services = services; }

    @Override
    public ServerServiceDefinition bindService() { return services.bind(PlacementGrpc.getServiceDescriptor()); }
}
