package io.lightmesh.router.app;

import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServerInterceptors;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.router.ApiKeyCheck;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.quarkus.grpc.GrpcService;

/**
 * lightmesh.v1.Inference on Quarkus's gRPC server: RouterCore's implementation (RouterNode), traced and offloaded,
 * behind {@link ApiKeyCheck} when {@code lightmesh.api-key} is set.
 */
@GrpcService
public class InferenceService implements BindableService {
    private final DeferredServices services;
    private final RouterConfig config;

    InferenceService(DeferredServices services, RouterConfig config) {
        this.services = services;
        this.config = config;
    }

    @Override
    public ServerServiceDefinition bindService() {
        ServerServiceDefinition api = services.bind(InferenceGrpc.getServiceDescriptor());
        String key = config.apiKey().orElse(null);
        return key == null || key.isEmpty() ? api : ServerInterceptors.intercept(api, new ApiKeyCheck(key));
    }
}
