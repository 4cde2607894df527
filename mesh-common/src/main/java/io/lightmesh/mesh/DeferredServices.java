package io.lightmesh.mesh;

import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.Status;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * gRPC services whose implementation arrives after the server has started: a server built at start-up binds
 * {@link #bind(ServiceDescriptor)} (the contract only), and the service answers UNAVAILABLE until the worker that
 * implements it is built and {@link #publish published} (its model loaded, its experts placed, which can take
 * minutes and must not run on the server's event loop). UNAVAILABLE is what callers of the mesh retry.
 */
public final class DeferredServices {
    private final Map<String, ServerServiceDefinition> published = new ConcurrentHashMap<>();
    private final Map<String, Status> declined = new ConcurrentHashMap<>();
    private volatile boolean ready;

    /** The implementation of one service; calls of it from now on go there. */
    public void publish(ServerServiceDefinition service) {
        published.put(service.getServiceDescriptor().getName(), service);
    }

    /**
     * This process will never serve {@code service} (as configured): its calls answer {@code why} at once instead of
     * UNAVAILABLE, which callers would retry until their own wait ran out (e.g. FAILED_PRECONDITION naming the setting).
     */
    public void decline(String service, Status why) { declined.put(service, why); }

    /** Every service is published: the worker is up. */
    public void markReady() { ready = true; }

    public boolean ready() { return ready; }

    /** A definition of {@code contract} whose calls go to the published implementation, or fail UNAVAILABLE before it is. */
    public ServerServiceDefinition bind(ServiceDescriptor contract) {
        ServerServiceDefinition.Builder b = ServerServiceDefinition.builder(contract);
        for (MethodDescriptor<?, ?> m : contract.getMethods()) add(b, contract.getName(), m);
        return b.build();
    }

    private <Q, R> void add(ServerServiceDefinition.Builder b, String service, MethodDescriptor<Q, R> method) {
        b.addMethod(method, new ServerCallHandler<Q, R>() {
            @Override
            @SuppressWarnings("unchecked")
            public ServerCall.Listener<Q> startCall(ServerCall<Q, R> call, Metadata headers) {
                ServerServiceDefinition impl = published.get(service);
                ServerMethodDefinition<Q, R> target = impl == null ? null
                        : (ServerMethodDefinition<Q, R>) impl.getMethod(method.getFullMethodName());
                if (target == null) {
                    Status no = declined.get(service);
                    call.close(no != null ? no : Status.UNAVAILABLE.withDescription(service + " is starting (not ready yet)"), new Metadata());
                    return new ServerCall.Listener<>() {};
                }
                return target.getServerCallHandler().startCall(call, headers);
            }
        });
    }
}
