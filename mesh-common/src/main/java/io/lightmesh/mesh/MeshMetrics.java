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
import java.util.Map;

/**
 * A service's metrics, always recorded (whether or not traces are exported) and scraped in the Prometheus text format
 * ({@link #scrape}, served on {@code /q/metrics}: what an HPA through a Prometheus adapter or a KEDA Prometheus
 * trigger reads). They are never pushed over OTLP from here (traces are, by Quarkus's SDK, when
 * {@code OTEL_EXPORTER_OTLP_ENDPOINT} is set).
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

    /**
     * Metrics of {@code serviceName}, on the Prometheus reader only. Whatever the OTEL_* variables and otel.* system
     * properties say, this SDK exports nothing itself: no metric, span or log exporter (those are overridden to
     * {@code none}), so an OTLP endpoint set for the traces (which Quarkus's SDK exports) never makes it look for an
     * OTLP metric exporter that the Quarkus applications do not carry. The standard variables still set the resource
     * (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME over {@code serviceName}).
     */
    public static MeshMetrics fromEnvironment(String serviceName) {
        PrometheusMetricReader reader = PrometheusMetricReader.builder().setOtelScopeLabelsEnabled(false).setTargetInfoMetricEnabled(false).build();
        OpenTelemetrySdk sdk = AutoConfiguredOpenTelemetrySdk.builder()
                .addPropertiesSupplier(() -> Map.of("otel.service.name", serviceName))
                .addPropertiesCustomizer(config -> EXPORTERS_OFF)
                .addMeterProviderCustomizer((b, config) -> b.registerMetricReader(reader))
                .disableShutdownHook().build().getOpenTelemetrySdk();
        return new MeshMetrics(reader, sdk);
    }

    /** Overrides of whatever the environment says: this SDK only records, for the Prometheus reader. */
    static final Map<String, String> EXPORTERS_OFF = Map.of(
            "otel.metrics.exporter", "none",
            "otel.traces.exporter", "none",
            "otel.logs.exporter", "none",
            "otel.sdk.disabled", "false");

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
