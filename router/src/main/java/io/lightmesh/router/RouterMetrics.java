package io.lightmesh.router;

import io.lightmesh.mesh.MeshTelemetry;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.metrics.DoubleHistogram;
import io.opentelemetry.api.metrics.Meter;
import io.opentelemetry.api.metrics.ObservableLongGauge;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The router's figures: requests in flight (admitted, not finished: what admission bounds) and queued for prefill
 * (an attempt launched, no token back yet), as gauges, and each request's time to first token and per output token.
 */
final class RouterMetrics implements AutoCloseable {
    final AtomicInteger inFlight = new AtomicInteger();
    final AtomicInteger queued = new AtomicInteger();
    private final DoubleHistogram ttft, tpot;
    private final List<ObservableLongGauge> gauges = new ArrayList<>();

    RouterMetrics(OpenTelemetry otel) {
        Meter meter = otel.getMeter(MeshTelemetry.SCOPE);
        ttft = meter.histogramBuilder("lightmesh.request.time_to_first_token").setUnit("s")
                .setDescription("From admission by the router to the first generated token").build();
        tpot = meter.histogramBuilder("lightmesh.request.time_per_output_token").setUnit("s")
                .setDescription("Mean time between output tokens of a request after its first").build();
        gauges.add(meter.gaugeBuilder("lightmesh.router.queue.depth").ofLongs().setUnit("{request}")
                .setDescription("Requests queued for prefill (on the Kafka topic or being prefilled), no token back yet")
                .buildWithCallback(m -> m.record(queued.get())));
        gauges.add(meter.gaugeBuilder("lightmesh.router.requests.in_flight").ofLongs().setUnit("{request}")
                .setDescription("Requests admitted and not finished").buildWithCallback(m -> m.record(inFlight.get())));
    }

    void firstToken(double seconds) { ttft.record(seconds); }

    void timePerOutputToken(double seconds) { tpot.record(seconds); }

    @Override
    public void close() { gauges.forEach(ObservableLongGauge::close); }
}
