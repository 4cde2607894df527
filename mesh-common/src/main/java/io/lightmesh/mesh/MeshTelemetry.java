package io.lightmesh.mesh;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.TextMapGetter;
import io.opentelemetry.context.propagation.TextMapPropagator;
import io.opentelemetry.context.propagation.TextMapSetter;
import io.opentelemetry.sdk.autoconfigure.AutoConfiguredOpenTelemetrySdk;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * OpenTelemetry for the mesh: the SDK set up from the standard {@code OTEL_*} variables, and W3C trace context
 * carried across every hop of a request, so that one trace spans router, Kafka, prefill, state transfer, decode and
 * the expert shards:
 * <ul>
 *   <li>gRPC: {@link #clientInterceptor()} writes the caller's current context into the call's metadata
 *       ({@code traceparent}, {@code tracestate}); {@link #serverInterceptor()} makes it current while the service
 *       handles the call;</li>
 *   <li>Kafka: {@link #inject(Context, Headers)} / {@link #extract(Headers)} on the record headers;</li>
 *   <li>messages of a long-lived stream (ExpertBatch.traceparent): {@link #traceparent} / {@link #fromTraceparent}.</li>
 * </ul>
 *
 * <p>Exporters: with {@code OTEL_EXPORTER_OTLP_ENDPOINT} set, traces and metrics go there over OTLP; otherwise
 * nothing is exported unless {@code OTEL_TRACES_EXPORTER} / {@code OTEL_METRICS_EXPORTER} say so (e.g.
 * {@code logging}). Every other {@code OTEL_*} variable (sampler, resource attributes, export intervals) works as the
 * SDK documents it; {@code OTEL_SERVICE_NAME} overrides the service's own name ("lightmesh-router", ...).
 */
public final class MeshTelemetry {
    /** The propagator of the mesh's contracts: W3C trace context only. */
    public static final TextMapPropagator PROPAGATOR = W3CTraceContextPropagator.getInstance();
    /** Instrumentation scope of every tracer and meter of the mesh. */
    public static final String SCOPE = "io.lightmesh.mesh";

    private static final Metadata.Key<String> TRACEPARENT = Metadata.Key.of("traceparent", Metadata.ASCII_STRING_MARSHALLER);
    private static final Metadata.Key<String> TRACESTATE = Metadata.Key.of("tracestate", Metadata.ASCII_STRING_MARSHALLER);

    private MeshTelemetry() {}

    /** The SDK for one service, configured from the environment as described above. */
    public static OpenTelemetry fromEnvironment(String serviceName) {
        boolean otlp = env("OTEL_EXPORTER_OTLP_ENDPOINT") != null || System.getProperty("otel.exporter.otlp.endpoint") != null;
        Map<String, String> defaults = new HashMap<>();
        defaults.put("otel.service.name", serviceName);
        defaults.put("otel.traces.exporter", otlp ? "otlp" : "none");
        defaults.put("otel.metrics.exporter", otlp ? "otlp" : "none");
        defaults.put("otel.logs.exporter", "none");
        defaults.put("otel.propagators", "tracecontext");
        return AutoConfiguredOpenTelemetrySdk.builder().addPropertiesSupplier(() -> defaults).disableShutdownHook()
                .build().getOpenTelemetrySdk();
    }

    private static String env(String name) {
        String v = System.getenv(name);
        return v == null || v.isBlank() ? null : v;
    }

    // ---- gRPC ----

    /** Writes the current context into each outgoing call's metadata. */
    public static ClientInterceptor clientInterceptor() {
        return new ClientInterceptor() {
            @Override
            public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
                return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
                    @Override
                    public void start(Listener<R> listener, Metadata headers) {
                        PROPAGATOR.inject(Context.current(), headers, METADATA_SETTER);
                        super.start(listener, headers);
                    }
                };
            }
        };
    }

    /** Makes the caller's context (from the call's metadata) current in every callback of the service's handler. */
    public static ServerInterceptor serverInterceptor() {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
                Context ctx = PROPAGATOR.extract(Context.root(), headers, METADATA_GETTER);
                ServerCall.Listener<Q> delegate;
                try (Scope ignored = ctx.makeCurrent()) {
                    delegate = next.startCall(call, headers);
                }
                return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(delegate) {
                    @Override public void onMessage(Q m) { try (Scope s = ctx.makeCurrent()) { super.onMessage(m); } }
                    @Override public void onHalfClose() { try (Scope s = ctx.makeCurrent()) { super.onHalfClose(); } }
                    @Override public void onCancel() { try (Scope s = ctx.makeCurrent()) { super.onCancel(); } }
                    @Override public void onComplete() { try (Scope s = ctx.makeCurrent()) { super.onComplete(); } }
                    @Override public void onReady() { try (Scope s = ctx.makeCurrent()) { super.onReady(); } }
                };
            }
        };
    }

    private static final TextMapSetter<Metadata> METADATA_SETTER = (m, k, v) -> {
        if (m != null) m.put(Metadata.Key.of(k, Metadata.ASCII_STRING_MARSHALLER), v);
    };

    private static final TextMapGetter<Metadata> METADATA_GETTER = new TextMapGetter<>() {
        @Override public Iterable<String> keys(Metadata m) { return m.keys(); }
        @Override public String get(Metadata m, String k) {
            return m == null ? null : k.equals("traceparent") ? m.get(TRACEPARENT) : k.equals("tracestate") ? m.get(TRACESTATE)
                    : m.get(Metadata.Key.of(k, Metadata.ASCII_STRING_MARSHALLER));
        }
    };

    // ---- Kafka record headers ----

    public static void inject(Context ctx, Headers headers) {
        PROPAGATOR.inject(ctx, headers, (h, k, v) -> {
            if (h == null) return;
            h.remove(k);
            h.add(k, v.getBytes(StandardCharsets.UTF_8));
        });
    }

    public static Context extract(Headers headers) {
        return PROPAGATOR.extract(Context.root(), headers, new TextMapGetter<>() {
            @Override public Iterable<String> keys(Headers h) {
                List<String> keys = new java.util.ArrayList<>();
                for (Header x : h) keys.add(x.key());
                return keys;
            }
            @Override public String get(Headers h, String k) {
                Header x = h == null ? null : h.lastHeader(k);
                return x == null ? null : new String(x.value(), StandardCharsets.UTF_8);
            }
        });
    }

    // ---- one string, for messages of long-lived streams ----

    /** The W3C traceparent of {@code ctx}'s span; "" when it has none. */
    public static String traceparent(Context ctx) {
        String[] out = {""};
        PROPAGATOR.inject(ctx, out, (o, k, v) -> { if (o != null && k.equals("traceparent")) o[0] = v; });
        return out[0];
    }

    /** The context whose remote parent is {@code traceparent}; the root context when it is empty or invalid. */
    public static Context fromTraceparent(String traceparent) {
        if (traceparent == null || traceparent.isEmpty()) return Context.root();
        return PROPAGATOR.extract(Context.root(), traceparent, new TextMapGetter<>() {
            @Override public Iterable<String> keys(String c) { return List.of("traceparent"); }
            @Override public String get(String c, String k) { return k.equals("traceparent") ? c : null; }
        });
    }
}
