package io.lightmesh.mesh;

import com.sun.net.httpserver.HttpServer;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link MeshMetrics}: what the services record is scraped in Prometheus's text format, and never pushed over OTLP,
 * whatever the OTEL_* settings say (the Quarkus applications carry no OTel OTLP exporter: an SDK that looked for one
 * failed their start when OTEL_EXPORTER_OTLP_ENDPOINT was set, as QuarkusServicesTest sets it).
 */
class MeshMetricsTest {
    /** The otel.* settings of a pod with an OTLP collector configured, as system properties (they read as the env). */
    private static final Map<String, String> OTLP_ON = Map.of(
            "otel.exporter.otlp.protocol", "http/protobuf",
            "otel.metrics.exporter", "otlp",
            "otel.traces.exporter", "otlp",
            "otel.logs.exporter", "otlp",
            "otel.metric.export.interval", "100");

    private HttpServer collector;

    @AfterEach
    void clear() {
        OTLP_ON.keySet().forEach(System::clearProperty);
        System.clearProperty("otel.exporter.otlp.endpoint");
        if (collector != null) collector.stop(0);
    }

    @Test
    void scrapesTheMeshInstrumentsInPrometheusFormat() {
        try (MeshMetrics m = MeshMetrics.fromEnvironment("lightmesh-test")) {
            OpenTelemetry otel = m.withTracing(OpenTelemetry.noop());
            otel.getMeter(MeshTelemetry.SCOPE).counterBuilder("lightmesh.test.requests").build().add(3);
            otel.getMeter(MeshTelemetry.SCOPE).gaugeBuilder("lightmesh.decode.sequences.active").ofLongs()
                    .buildWithCallback(g -> g.record(7));
            String text = m.scrape();
            assertTrue(text.contains("lightmesh_test_requests_total 3.0"), text);
            assertTrue(text.contains("lightmesh_decode_sequences_active 7.0"), text);
            assertTrue(text.contains("# TYPE lightmesh_test_requests_total counter"), text);
        }
    }

    @Test
    void neverExportsOverOtlpEvenWhenTheEnvironmentAsksForIt() throws Exception {
        List<String> bodies = new CopyOnWriteArrayList<>();
        collector = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        collector.createContext("/", ex -> {
            bodies.add(ex.getRequestURI().getPath() + " " + new String(ex.getRequestBody().readAllBytes(), StandardCharsets.ISO_8859_1));
            ex.sendResponseHeaders(200, -1);
            ex.close();
        });
        collector.start();
        OTLP_ON.forEach(System::setProperty);
        System.setProperty("otel.exporter.otlp.endpoint", "http://127.0.0.1:" + collector.getAddress().getPort());

        OpenTelemetrySdk control = (OpenTelemetrySdk) MeshTelemetry.fromEnvironment("control-exporting-sdk");
        try (MeshMetrics m = MeshMetrics.fromEnvironment("mesh-metrics-under-test")) {
            m.withTracing(OpenTelemetry.noop()).getMeter(MeshTelemetry.SCOPE).counterBuilder("lightmesh.test.requests").build().add(1);
            control.getMeter(MeshTelemetry.SCOPE).counterBuilder("lightmesh.test.requests").build().add(1);
            // the control SDK, configured the same way, does reach the collector: an export would have been seen
            long until = System.currentTimeMillis() + 15_000;
            while (bodies.stream().noneMatch(b -> b.startsWith("/v1/metrics") && b.contains("control-exporting-sdk"))) {
                if (System.currentTimeMillis() > until) throw new AssertionError("the control SDK exported nothing: " + bodies.size() + " requests");
                Thread.sleep(50);
            }
            Thread.sleep(500); // five more export intervals
            assertEquals(List.of(), bodies.stream().filter(b -> b.contains("mesh-metrics-under-test")).toList());
            assertTrue(m.scrape().contains("lightmesh_test_requests_total 1.0"));
        } finally {
            control.close();
        }
    }
}
