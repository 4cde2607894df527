package io.lightmesh.mesh;

import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.metrics.MeterProvider;
import io.opentelemetry.api.trace.TracerProvider;
import io.opentelemetry.context.propagation.ContextPropagators;
import io.opentelemetry.exporter.prometheus.PrometheusMetricReader;
import io.opentelemetry.sdk.autoconfigure.AutoConfiguredOpenTelemetrySdk;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.prometheus.metrics.config.EscapingScheme;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

/**
 * A service's metrics, always recorded (whether or not traces are exported) and readable two ways: scraped in the
 * Prometheus text format ({@link #scrape}, served on {@code /q/metrics}: what an HPA through a Prometheus adapter or
 * a KEDA Prometheus trigger reads) and, when {@code OTEL_EXPORTER_OTLP_ENDPOINT} is set and OTel's OTLP exporter is on
 * the classpath (not in the Quarkus applications, which carry Quarkus's own), pushed over OTLP.
 * One OpenTelemetry meter provider with OTel's Prometheus reader ({@code opentelemetry-exporter-prometheus}): the
 * instruments the services already define (MeshTelemetry scope) become {@code lightmesh_*} series, e.g.
 * {@code lightmesh.decode.sequences.active} as {@code lightmesh_decode_sequences_active}.
 *
 * <p>{@link #withTracing} joins these metrics with a tracing SDK (Quarkus's), so a service has one OpenTelemetry.
 */
public final class MeshMetrics implements AutoCloseable {
    /** Content type of {@link #scrape}'s answer. */
    public static final String CONTENT_TYPE = PrometheusTextFormatWriter.CONTENT_TYPE;

    private final PrometheusMetricReader prometheus;
    private final OpenTelemetrySdk sdk;
    private final PrometheusTextFormatWriter writer = PrometheusTextFormatWriter.create();

    private MeshMetrics(PrometheusMetricReader prometheus, OpenTelemetrySdk sdk) {
        this.prometheus = prometheus;
        this.sdk = sdk;
    }

    /** Metrics of {@code serviceName}: Prometheus always, OTLP when the standard OTEL_* variables say so. */
    public static MeshMetrics fromEnvironment(String serviceName) {
        boolean otlp = nonBlank(System.getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) || System.getProperty("otel.exporter.otlp.endpoint") != null;
        // the Quarkus applications carry Quarkus's own OTLP exporters, not OTel's: there the metrics stay on /q/metrics
        if (otlp && !present("io.opentelemetry.exporter.otlp.internal.OtlpMetricExporterProvider")) {
            java.util.logging.Logger.getLogger(MeshMetrics.class.getName()).info(
                    "metrics: no OTel OTLP exporter in this application; metrics are served on /q/metrics only");
            otlp = false;
        }
        Map<String, String> defaults = new HashMap<>();
        defaults.put("otel.service.name", serviceName);
        defaults.put("otel.traces.exporter", "none"); // traces stay with the service's own tracing SDK
        defaults.put("otel.logs.exporter", "none");
        defaults.put("otel.metrics.exporter", otlp ? "otlp" : "none");
        PrometheusMetricReader reader = PrometheusMetricReader.builder().setOtelScopeLabelsEnabled(false).setTargetInfoMetricEnabled(false).build();
        OpenTelemetrySdk sdk = AutoConfiguredOpenTelemetrySdk.builder().addPropertiesSupplier(() -> defaults)
                .addMeterProviderCustomizer((b, config) -> b.registerMetricReader(reader))
                .disableShutdownHook().build().getOpenTelemetrySdk();
        return new MeshMetrics(reader, sdk);
    }

    private static boolean nonBlank(String s) { return s != null && !s.isBlank(); }

    private static boolean present(String className) {
        try {
            Class.forName(className, false, MeshMetrics.class.getClassLoader());
            return true;
        } catch (ClassNotFoundException e) {
            return false;
        }
    }

    public MeterProvider meterProvider() { return sdk.getMeterProvider(); }

    /** {@code tracing}'s tracer provider and propagators, with these metrics. */
    public OpenTelemetry withTracing(OpenTelemetry tracing) {
        MeterProvider meters = sdk.getMeterProvider();
        return new OpenTelemetry() {
            @Override public TracerProvider getTracerProvider() { return tracing.getTracerProvider(); }
            @Override public MeterProvider getMeterProvider() { return meters; }
            @Override public ContextPropagators getPropagators() { return tracing.getPropagators(); }
        };
    }

    /** Every metric now, in the Prometheus text format (version 0.0.4). */
    public void scrape(OutputStream out) throws IOException {
        writer.write(out, prometheus.collect(), EscapingScheme.UNDERSCORE_ESCAPING);
    }

    public String scrape() {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        try {
            scrape(b);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return b.toString(StandardCharsets.UTF_8);
    }

    @Override
    public void close() { sdk.close(); }
}
