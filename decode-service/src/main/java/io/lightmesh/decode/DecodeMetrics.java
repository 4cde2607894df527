package io.lightmesh.decode;

import io.lightmesh.mesh.MeshTelemetry;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.DoubleHistogram;
import io.opentelemetry.api.metrics.LongCounter;
import io.opentelemetry.api.metrics.LongHistogram;
import io.opentelemetry.api.metrics.Meter;
import io.opentelemetry.api.metrics.ObservableLongGauge;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.IntSupplier;
import java.util.function.LongSupplier;

/**
 * A decode worker's figures: the OpenTelemetry instruments (batch size, step time, state bytes received, and the
 * gauges an autoscaler of decode workers scales on: active sequences, state bytes charged, the budget) and the
 * plain counters benchmarks read in-process.
 */
final class DecodeMetrics implements AutoCloseable {
    /** Decode steps, sequences summed over steps (mean batch size = rows / steps), step nanoseconds. */
    final LongAdder steps = new LongAdder(), stepRows = new LongAdder(), stepNanos = new LongAdder();
    final AtomicLong stateBytesReceived = new AtomicLong();

    private final Meter meter;
    private final Attributes worker;
    private final LongHistogram batchSize;
    private final DoubleHistogram stepSeconds;
    private final LongCounter stateBytes;
    private final LongCounter rows;
    private final Attributes argmaxRows, logitRows;
    private final List<ObservableLongGauge> gauges = new ArrayList<>();

    DecodeMetrics(OpenTelemetry otel, String workerId) {
        this.meter = otel.getMeter(MeshTelemetry.SCOPE);
        this.worker = Attributes.of(AttributeKey.stringKey("lightmesh.worker"), workerId);
        this.batchSize = meter.histogramBuilder("lightmesh.decode.batch.size").ofLongs().setUnit("{sequence}")
                .setDescription("Sequences in one batched decode step").build();
        this.stepSeconds = meter.histogramBuilder("lightmesh.decode.step.duration").setUnit("s")
                .setDescription("Time of one batched decode step (forward pass, sampling, events)").build();
        this.stateBytes = meter.counterBuilder("lightmesh.state.transferred").setUnit("By")
                .setDescription("Bytes of sequence state received from prefill workers (accepted hand-offs)").build();
        this.rows = meter.counterBuilder("lightmesh.decode.rows").setUnit("{token}")
                .setDescription("Tokens decoded, by whether the step read the row's logits back (sampled, penalised or "
                        + "log-probability rows) or took its greedy argmax (on the device path: ids read back only)").build();
        AttributeKey<Boolean> logits = AttributeKey.booleanKey("lightmesh.decode.logits");
        this.argmaxRows = worker.toBuilder().put(logits, false).build();
        this.logitRows = worker.toBuilder().put(logits, true).build();
    }

    /**
     * The gauges, read at each collection: sequences being decoded, state bytes charged (held and reserved), and the
     * budget (with active sequences, what an autoscaler of decode workers scales on).
     */
    void observe(IntSupplier active, LongSupplier usedBytes, long budgetBytes) {
        gauges.add(meter.gaugeBuilder("lightmesh.decode.sequences.active").ofLongs().setUnit("{sequence}")
                .setDescription("Sequences being decoded").buildWithCallback(m -> m.record(active.getAsInt(), worker)));
        gauges.add(meter.gaugeBuilder("lightmesh.decode.state.used").ofLongs().setUnit("By")
                .setDescription("Sequence state bytes charged (held and reserved) on this decode worker")
                .buildWithCallback(m -> m.record(usedBytes.getAsLong(), worker)));
        gauges.add(meter.gaugeBuilder("lightmesh.decode.state.budget").ofLongs().setUnit("By")
                .setDescription("Sequence state budget of this decode worker").buildWithCallback(m -> m.record(budgetBytes, worker)));
    }

    /** One batched step of {@code rows} sequences, {@code logitRows} of them with their logits read, that took {@code nanos}. */
    void step(int rows, int logitRows, long nanos) {
        if (rows > logitRows) this.rows.add(rows - logitRows, argmaxRows);
        if (logitRows > 0) this.rows.add(logitRows, this.logitRows);
        batchSize.record(rows);
        stepSeconds.record(nanos / 1e9);
        stepNanos.add(nanos);
        steps.increment();
        stepRows.add(rows);
    }

    /** An accepted hand-off of {@code bytes} of state. */
    void stateReceived(long bytes) {
        stateBytesReceived.addAndGet(bytes);
        stateBytes.add(bytes);
    }

    @Override
    public void close() { gauges.forEach(ObservableLongGauge::close); }
}
