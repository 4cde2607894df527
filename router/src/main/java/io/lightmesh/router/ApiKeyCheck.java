package io.lightmesh.router;

import io.grpc.BindableService;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.lightmesh.proto.v1.InferenceGrpc;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.List;

/**
 * The router's API key on its public gRPC API, as the OpenAI HTTP API checks it: a call without the metadata
 * {@code authorization: Bearer <key>} ends UNAUTHENTICATED before any method runs. {@code Health} stays open, for
 * probes and load balancers. The client SDK sends the header when built with {@code apiKey(...)}.
 */
public final class ApiKeyCheck implements ServerInterceptor {
    static final Metadata.Key<String> AUTHORIZATION = Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
    private static final String OPEN = InferenceGrpc.getHealthMethod().getFullMethodName();

    private final byte[] expected;

    public ApiKeyCheck(String key) {
        if (key == null || key.isEmpty()) throw new IllegalArgumentException("an API key is required");
        this.expected = ("Bearer " + key).getBytes(StandardCharsets.UTF_8);
    }

    /** The services behind the check; unchanged when {@code key} is null or empty (no API key configured). */
    public static List<BindableService> protect(List<BindableService> services, String key) {
        if (key == null || key.isEmpty()) return services;
        ApiKeyCheck check = new ApiKeyCheck(key);
        return services.stream().<BindableService>map(s -> () -> ServerInterceptors.intercept(s, check)).toList();
    }

    @Override
    public <Q, A> ServerCall.Listener<Q> interceptCall(ServerCall<Q, A> call, Metadata headers, ServerCallHandler<Q, A> next) {
        if (OPEN.equals(call.getMethodDescriptor().getFullMethodName())) return next.startCall(call, headers);
        String given = headers.get(AUTHORIZATION);
        // constant-time comparison: the time taken says nothing about how much of the key was right
        if (given != null && MessageDigest.isEqual(expected, given.getBytes(StandardCharsets.UTF_8))) return next.startCall(call, headers);
        call.close(Status.UNAUTHENTICATED.withDescription(given == null
                ? "missing API key: send the metadata 'authorization: Bearer <key>'" : "incorrect API key"), new Metadata());
        return new ServerCall.Listener<>() {};
    }
}
