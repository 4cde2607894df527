package io.lightmesh.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptors;
import io.grpc.Deadline;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.MetadataUtils;
import io.lightmesh.client.internal.DeltaPublisher;
import io.lightmesh.client.internal.Protos;
import io.lightmesh.client.internal.StreamCall;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.HealthRequest;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.ModelInfoRequest;
import io.lightmesh.proto.v1.TokenizeRequest;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.Flow;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * A client of a LightMesh server (a mesh router or a single-process server). Thread-safe; make one per server and
 * share it. Close it when done.
 *
 * <pre>{@code
 * try (LightMeshClient client = LightMeshClient.builder().target("localhost:9000").build()) {
 *     Completion answer = client.chat(List.of(ChatMessage.user("Hello")), List.of());
 *     System.out.println(answer.text());
 * }
 * }</pre>
 *
 * Every call honours a deadline (the request's, else the client's default) across all its retries, and failures
 * are {@link LightMeshException}s. Retries follow the {@link RetryPolicy}; a stream is never restarted once part of
 * it was delivered. Cancelling (a future, a stream, a subscription, an interrupted blocking call) cancels the call on
 * the server, which stops generating.
 */
public final class LightMeshClient implements AutoCloseable {
    private final Channel channel;
    private final ManagedChannel owned;       // null when the caller supplied the channel
    private final Duration defaultDeadline;
    private final RetryPolicy retryPolicy;
    private final ScheduledExecutorService scheduler;

    private LightMeshClient(Builder b) {
        Channel base;
        if (b.channel != null) {
            base = b.channel;
            owned = null;
        } else {
            ChannelCredentials credentials = b.tls ? tlsCredentials(b.trustedCertificates) : InsecureChannelCredentials.create();
            owned = Grpc.newChannelBuilder(b.target, credentials)
                    .maxInboundMessageSize(b.maxMessageBytes)
                    .userAgent("lightmesh-java-sdk")
                    .build();
            base = owned;
        }
        if (b.apiKey != null) {
            Metadata headers = new Metadata();
            headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + b.apiKey);
            base = ClientInterceptors.intercept(base, MetadataUtils.newAttachHeadersInterceptor(headers));
        }
        channel = base;
        defaultDeadline = b.defaultDeadline;
        retryPolicy = b.retryPolicy;
        scheduler = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "lightmesh-client-retry");
            t.setDaemon(true);
            return t;
        });
    }

    private static ChannelCredentials tlsCredentials(Path trusted) {
        if (trusted == null) return TlsChannelCredentials.create();
        try {
            return TlsChannelCredentials.newBuilder().trustManager(trusted.toFile()).build();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read trusted certificates " + trusted, e);
        }
    }

    /** A builder; {@link Builder#target(String)} or {@link Builder#channel(Channel)} is required. */
    public static Builder builder() { return new Builder(); }

    // ---- generation ----

    /**
     * Generates a whole answer (blocking).
     *
     * @throws LightMeshException when the call fails, after retries
     */
    public Completion generate(GenerationRequest request) { return await(generateAsync(request)); }

    /**
     * Generates a whole answer. Cancelling the future cancels the call on the server. The future fails with a
     * {@link LightMeshException}.
     */
    public CompletableFuture<Completion> generateAsync(GenerationRequest request) {
        return unary(InferenceGrpc.getGenerateMethod(), Protos.toProto(request), request.deadline(), Protos::fromProto);
    }

    /** A chat turn (blocking): the answer, with its reasoning and tool calls apart from its text. */
    public Completion chat(List<ChatMessage> messages, List<Tool> tools) {
        return generate(GenerationRequest.chat(messages).tools(tools).build());
    }

    /** Streams an answer as an iterator of deltas; see {@link GenerationStream}. The call starts at once. */
    public GenerationStream stream(GenerationRequest request) {
        GenerateRequest proto = Protos.toProto(request);
        return new GenerationStream(proto.getRequestId(), streamCalls(proto, request.deadline()));
    }

    /**
     * Streams an answer as a {@link Flow.Publisher} of deltas. Cold: each subscription runs the request (with the
     * same request id). Demand is passed on to the server as flow control; cancelling the subscription cancels the
     * call on the server. A failure arrives as {@code onError} with a {@link LightMeshException}.
     */
    public Flow.Publisher<Delta> publisher(GenerationRequest request) {
        GenerateRequest proto = Protos.toProto(request);
        return new DeltaPublisher(streamCalls(proto, request.deadline()));
    }

    private Function<StreamCall.Listener<GenerateChunk>, StreamCall<GenerateRequest, GenerateChunk>> streamCalls(
            GenerateRequest proto, Duration deadline) {
        return listener -> new StreamCall<>(channel, InferenceGrpc.getGenerateStreamMethod(), options(deadline), proto,
                retryPolicy, scheduler, listener);
    }

    // ---- tokens, model, health ----

    /** The tokens of raw text, with each token's text piece (blocking). */
    public Tokens tokenize(String text) {
        TokenizeRequest r = TokenizeRequest.newBuilder().setText(text).setReturnPieces(true).build();
        return await(unary(InferenceGrpc.getTokenizeMethod(), r, null, Protos::fromProto));
    }

    /** The tokens of a chat, exactly as a chat generation would feed it to the model (blocking). */
    public Tokens tokenize(List<ChatMessage> messages, List<Tool> tools) {
        TokenizeRequest r = TokenizeRequest.newBuilder().setChat(Protos.chat(messages, tools)).setReturnPieces(true).build();
        return await(unary(InferenceGrpc.getTokenizeMethod(), r, null, Protos::fromProto));
    }

    /** The model the server runs (blocking). */
    public ModelInfo modelInfo() { return await(modelInfoAsync()); }

    /** The model the server runs. */
    public CompletableFuture<ModelInfo> modelInfoAsync() {
        return unary(InferenceGrpc.getGetModelInfoMethod(), ModelInfoRequest.getDefaultInstance(), null, Protos::fromProto);
    }

    /** Whether the server can take requests, and the state of each part of the mesh (blocking; not retried). */
    public Health health() {
        return await(unary(InferenceGrpc.getHealthMethod(), HealthRequest.getDefaultInstance(), null, RetryPolicy.none(),
                Protos::fromProto));
    }

    // ---- plumbing ----

    private CallOptions options(Duration deadline) {
        Duration d = deadline != null ? deadline : defaultDeadline;
        CallOptions o = CallOptions.DEFAULT;
        return d == null ? o : o.withDeadline(Deadline.after(d.toNanos(), TimeUnit.NANOSECONDS));
    }

    private <Req, Resp, T> CompletableFuture<T> unary(MethodDescriptor<Req, Resp> method, Req request, Duration deadline,
                                                      Function<Resp, T> convert) {
        return unary(method, request, deadline, retryPolicy, convert);
    }

    private <Req, Resp, T> CompletableFuture<T> unary(MethodDescriptor<Req, Resp> method, Req request, Duration deadline,
                                                      RetryPolicy policy, Function<Resp, T> convert) {
        CallFuture<T> f = new CallFuture<>();
        StreamCall<Req, Resp> call = new StreamCall<>(channel, method, options(deadline), request, policy, scheduler,
                collector(f, convert));
        f.call = call;
        call.request(2);   // one response; asking for more lets a protocol error surface instead of hanging
        call.start();
        return f;
    }

    private static <Resp, T> StreamCall.Listener<Resp> collector(CompletableFuture<T> f, Function<Resp, T> convert) {
        return new StreamCall.Listener<>() {
            private T value;

            @Override public void onMessage(Resp m) { value = convert.apply(m); }

            @Override
            public void onClose(LightMeshException error) {
                if (error != null) f.completeExceptionally(error);
                else if (value == null) f.completeExceptionally(new LightMeshException(Status.Code.INTERNAL, "no response", null, 1, false));
                else f.complete(value);
            }
        };
    }

    /** A future whose cancellation cancels its call on the server. */
    private static final class CallFuture<T> extends CompletableFuture<T> {
        volatile StreamCall<?, ?> call;

        @Override
        public boolean cancel(boolean mayInterruptIfRunning) {
            boolean done = super.cancel(mayInterruptIfRunning);
            StreamCall<?, ?> c = call;
            if (c != null) c.cancel("cancelled by the client");
            return done;
        }
    }

    /** Waits for a call; an interrupt cancels it. Rethrows failures with this thread's stack. */
    private static <T> T await(CompletableFuture<T> f) {
        try {
            return f.get();
        } catch (InterruptedException e) {
            f.cancel(true);
            Thread.currentThread().interrupt();
            throw new LightMeshException(Status.Code.CANCELLED, "interrupted", e, 1, false);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof LightMeshException l) {
                throw new LightMeshException(l.code(), l.description(), l, l.attempts(), l.partial());
            }
            throw new LightMeshException(Status.Code.UNKNOWN, String.valueOf(e.getCause()), e.getCause(), 1, false);
        }
    }

    /**
     * Releases the client: the channel it opened (not one given to {@link Builder#channel(Channel)}) is shut down,
     * waiting up to 5 seconds for calls in flight.
     */
    @Override
    public void close() {
        scheduler.shutdown();   // retries already scheduled still run (and fail on the closed channel): no call is left hanging
        if (owned != null) {
            owned.shutdown();
            try {
                if (!owned.awaitTermination(5, TimeUnit.SECONDS)) owned.shutdownNow();
            } catch (InterruptedException e) {
                owned.shutdownNow();
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Sets up a {@link LightMeshClient}. Setters return the builder. */
    public static final class Builder {
        private String target;
        private Channel channel;
        private boolean tls;
        private Path trustedCertificates;
        private String apiKey;
        private Duration defaultDeadline = Duration.ofMinutes(30);
        private RetryPolicy retryPolicy = RetryPolicy.defaults();
        private int maxMessageBytes = 64 << 20;

        private Builder() {}

        /** The server's address, {@code host:port} or any gRPC target ({@code dns:///router.svc:9000}). */
        public Builder target(String target) {
            this.target = Objects.requireNonNull(target, "target");
            return this;
        }

        /** Talk over this channel instead (in-process, or one configured by the caller); it is not closed with the client. */
        public Builder channel(Channel channel) {
            this.channel = Objects.requireNonNull(channel, "channel");
            return this;
        }

        /** Plain-text HTTP/2 (the default): for a server on localhost or inside a trusted network. */
        public Builder plaintext() {
            tls = false;
            trustedCertificates = null;
            return this;
        }

        /** TLS, trusting the JVM's default certificate authorities. */
        public Builder tls() {
            tls = true;
            trustedCertificates = null;
            return this;
        }

        /** TLS, trusting the certificates (PEM) in this file, e.g. a private CA's. */
        public Builder tls(Path trustedCertificatesPem) {
            tls = true;
            trustedCertificates = Objects.requireNonNull(trustedCertificatesPem);
            return this;
        }

        /** An API key, sent on every call as {@code authorization: Bearer <key>}. Use with TLS outside a trusted network. */
        public Builder apiKey(String apiKey) {
            this.apiKey = apiKey == null || apiKey.isEmpty() ? null : apiKey;
            return this;
        }

        /** Deadline of calls that set none, retries included (default 30 minutes: long reasoning takes time); null for none. */
        public Builder defaultDeadline(Duration deadline) {
            if (deadline != null && (deadline.isNegative() || deadline.isZero())) {
                throw new IllegalArgumentException("deadline must be positive");
            }
            defaultDeadline = deadline;
            return this;
        }

        /** When failed calls are retried (default {@link RetryPolicy#defaults()}). */
        public Builder retryPolicy(RetryPolicy policy) {
            retryPolicy = Objects.requireNonNull(policy, "policy");
            return this;
        }

        /** Largest response accepted, in bytes (default 64 MiB: token ids of long inputs). */
        public Builder maxMessageBytes(int bytes) {
            if (bytes < 1024) throw new IllegalArgumentException("maxMessageBytes too small");
            maxMessageBytes = bytes;
            return this;
        }

        /** The client. */
        public LightMeshClient build() {
            if ((target == null) == (channel == null)) throw new IllegalStateException("set exactly one of target and channel");
            if (channel != null && tls) throw new IllegalStateException("TLS is configured on the channel given, not here");
            return new LightMeshClient(this);
        }
    }
}
