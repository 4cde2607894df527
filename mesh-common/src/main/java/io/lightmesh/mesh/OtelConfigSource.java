package io.lightmesh.mesh;

import org.eclipse.microprofile.config.spi.ConfigSource;

import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * The standard {@code OTEL_*} variables for the services' Quarkus applications, read the way
 * {@link MeshTelemetry#fromEnvironment} reads them: with {@code OTEL_EXPORTER_OTLP_ENDPOINT} set, traces and metrics
 * go there over OTLP ({@code OTEL_EXPORTER_OTLP_PROTOCOL}: grpc or http/protobuf); without it the SDK is off and
 * nothing is exported. {@code OTEL_SERVICE_NAME} overrides the service's name. These are defaults: any
 * {@code quarkus.otel.*} key set in application.properties, a system property or the environment wins.
 *
 * <p>A MicroProfile Config source (registered in META-INF/services, used only where a MicroProfile Config
 * implementation runs, i.e. in the Quarkus applications).
 */
public final class OtelConfigSource implements ConfigSource {
    /** Below application.properties (250) and the environment (300). */
    static final int ORDINAL = 150;

    private final Map<String, String> values;

    public OtelConfigSource() { this(System::getenv); }

    OtelConfigSource(Function<String, String> env) { this.values = defaults(env); }

    static Map<String, String> defaults(Function<String, String> env) {
        Map<String, String> m = new HashMap<>();
        String endpoint = nonBlank(env.apply("OTEL_EXPORTER_OTLP_ENDPOINT"));
        m.put("quarkus.otel.sdk.disabled", String.valueOf(endpoint == null));
        if (endpoint != null) m.put("quarkus.otel.exporter.otlp.endpoint", endpoint);
        String protocol = nonBlank(env.apply("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if (protocol != null) m.put("quarkus.otel.exporter.otlp.protocol", protocol);
        String service = nonBlank(env.apply("OTEL_SERVICE_NAME"));
        if (service != null) m.put("quarkus.otel.service.name", service);
        return Map.copyOf(m);
    }

    private static String nonBlank(String s) { return s == null || s.isBlank() ? null : s; }

    @Override public Set<String> getPropertyNames() { return values.keySet(); }
    @Override public Map<String, String> getProperties() { return values; }
    @Override public String getValue(String name) { return values.get(name); }
    @Override public String getName() { return "lightmesh-otel-environment"; }
    @Override public int getOrdinal() { return ORDINAL; }
}
