package io.lightmesh.prefill;

import io.lightmesh.engine.prefix.PrefixCache;
import io.lightmesh.mesh.MeshTelemetry;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.DoubleHistogram;
import io.opentelemetry.api.metrics.Meter;
import io.opentelemetry.api.metrics.ObservableLongGauge;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.LongSupplier;
import java.util.logging.Logger;

/**
 * A prefill worker's figures: the OpenTelemetry instruments (prefill time, queue time, the consumer's lag, and the
 * prefix cache's, {@link PrefixCacheMetrics}) and the plain counters tests and benchmarks read in-process.
 */
final class PrefillMetrics implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(PrefillMetrics.class.getName());

    /** States shipped, and their bytes. */
    final LongAdder prefilled = new LongAdder();
    final AtomicLong stateBytesSent = new AtomicLong();
    /** Batched forward passes run, and the most requests one of them carried. */
    final LongAdder batches = new LongAdder();
    final AtomicInteger largestBatch = new AtomicInteger();

    private final Meter meter;
    private final String workerId;
    private final DoubleHistogram prefillSeconds, queueSeconds;
    private ObservableLongGauge lagGauge;
    private AutoCloseable cacheMetrics = () -> {};

    PrefillMetrics(OpenTelemetry otel, String workerId) {
        this.meter = otel.getMeter(MeshTelemetry.SCOPE);
        this.workerId = workerId;
        this.prefillSeconds = meter.histogramBuilder("lightmesh.prefill.duration").setUnit("s")
                .setDescription("Forward pass over a request's context on a prefill worker (that of its whole batch)").build();
        this.queueSeconds = meter.histogramBuilder("lightmesh.prefill.queue.duration").setUnit("s")
                .setDescription("From admission by the router until a prefill worker took the request").build();
    }

    /** The prefix cache's instruments (none when the cache is off). */
    void observeCache(PrefixCache cache) {
        if (cache != null) cacheMetrics = PrefixCacheMetrics.register(meter, cache, workerId);
    }

    /** The gauge of the consumer's lag on its partitions, read at each collection. */
    void observeLag(LongSupplier lag) {
        lagGauge = meter.gaugeBuilder("lightmesh.prefill.consumer.lag").ofLongs().setUnit("{record}")
                .setDescription("Records on the request topic's partitions assigned to this worker not yet consumed (Kafka's records-lag, summed)")
                .buildWithCallback(m -> m.record(lag.getAsLong(), Attributes.of(AttributeKey.stringKey("lightmesh.worker"), workerId)));
    }

    /** One forward pass carrying {@code requests}. */
    void batch(int requests) {
        batches.increment();
        largestBatch.accumulateAndGet(requests, Math::max);
    }

    /** A request's forward pass (that of its batch) and its time queued before it. */
    void prefilled(long prefillUs, long queueUs) {
        prefillSeconds.record(prefillUs / 1e6);
        queueSeconds.record(queueUs / 1e6);
    }

    /** A state shipped, of {@code bytes} sent. */
    void shipped(long bytes) {
        prefilled.increment();
        stateBytesSent.addAndGet(bytes);
    }

    /** Removes the instruments (first as the worker stops: the lag gauge reads the consumer). */
    @Override
    public void close() {
        if (lagGauge != null) lagGauge.close();
        try { cacheMetrics.close(); } catch (Exception e) { LOG.fine("closing prefix cache metrics: " + e); }
    }
}
