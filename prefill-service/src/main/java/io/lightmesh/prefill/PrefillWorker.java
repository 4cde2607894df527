package io.lightmesh.prefill;

import io.lightmesh.engine.model.ForwardPath;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.prefix.CachedPrefill;
import io.lightmesh.engine.prefix.PrefixCache;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.WorkerPath;
import io.lightmesh.proto.v1.PrefillTask;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.trace.Tracer;

import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * A prefill worker: one member of the consumer group on the request topic. Each poll gives it a batch: the records
 * fetched, in order, while their contexts fit in {@code batchTokens} (one at least, {@code batchMax} at most); the
 * rest are left on the topic (the consumer seeks back to them), so a worker takes work only when idle. For each
 * record of the batch it reserves room on the record's decode worker; it then prefills every context through the
 * same forward steps (the engine's batched prefill, long prompts cut into steps of {@code batchTokens}), each from the
 * longest prefix of it found in the worker's prefix cache ({@link CachedPrefill}; its cached tokens go to the client
 * in the usage), draws each
 * first token, ships each state, and commits a record's offset only once its decode worker acknowledged the state
 * (and every earlier record of its partition was committed). A worker that dies before committing leaves the records
 * to the next group member; duplicate request ids are dropped here and by the decode worker.
 *
 * <p>This class wires the parts: the {@link RequestTopic} (the consumer: batches and offsets), the
 * {@link PrefillPass} (the forward pass), the {@link StateShipper} (reservations, hand-offs and their answers), the
 * {@link PrefillLoop} that drives them, and the {@link PrefillMetrics}.
 */
public final class PrefillWorker implements AutoCloseable {
    /**
     * Settings (config keys lightmesh.prefill.*).
     *
     * @param batchTokens tokens of context per batch and per forward step (a longer context makes a batch of its own)
     * @param batchMax    records per batch at most (each holds a whole sequence state until it is shipped)
     * @param prefixCacheBytes budget of the worker's prefix cache ({@link PrefixCache}); 0 turns it off
     */
    public record Settings(String workerId, String bootstrapServers, String topic, String groupId, int chunkBytes,
                           long reserveTtlMs, long retryBackoffMs, int batchTokens, int batchMax, long prefixCacheBytes) {
        public static final int DEFAULT_BATCH_TOKENS = 2048, DEFAULT_BATCH_MAX = 8;

        public Settings {
            if (batchTokens < 1 || batchMax < 1) throw new IllegalArgumentException("prefill batch tokens and size must be positive");
            if (prefixCacheBytes < 0) throw new IllegalArgumentException("prefix cache size must be >= 0, got " + prefixCacheBytes);
        }

        /** The default prefix cache ({@link PrefixCache#defaultBytes}). */
        public Settings(String workerId, String bootstrapServers, String topic, String groupId, int chunkBytes,
                        long reserveTtlMs, long retryBackoffMs, int batchTokens, int batchMax) {
            this(workerId, bootstrapServers, topic, groupId, chunkBytes, reserveTtlMs, retryBackoffMs, batchTokens, batchMax, PrefixCache.defaultBytes());
        }

        /** Batches of the defaults: 2048 tokens, 8 requests. */
        public Settings(String workerId, String bootstrapServers, String topic, String groupId, int chunkBytes,
                        long reserveTtlMs, long retryBackoffMs) {
            this(workerId, bootstrapServers, topic, groupId, chunkBytes, reserveTtlMs, retryBackoffMs, DEFAULT_BATCH_TOKENS, DEFAULT_BATCH_MAX);
        }
    }

    /** Test hook: called after a record was taken and before it is worked on; may throw to simulate a crash. */
    public interface Hook { void taken(PrefillTask task); }

    /** Thrown by a test hook to stop the worker as if killed (no commit, leaves the group). */
    public static final class Crash extends RuntimeException {
        public Crash(String m) { super(m); }
    }

    private final MiniMaxModel model;
    /** The worker's prefix cache, shared by all its requests; null when off. */
    private final PrefixCache prefixCache;
    private final PrefillMetrics metrics;
    private final RequestTopic topic;
    private final StateShipper shipper;
    private final PrefillLoop loop;
    /** States shipped. */
    public final LongAdder prefilled;
    /** Batched forward passes run, and the most requests one of them carried. */
    public final LongAdder batches;
    public final AtomicInteger largestBatch;
    public final AtomicLong stateBytesSent;

    /** The path this worker's engine runs (decode, prefill, experts, micro-batching). */
    public ForwardPath path() { return model.path(); }

    /** The path as health data ({@link WorkerPath#healthData}). */
    public Map<String, Object> pathData() { return WorkerPath.healthData(model); }

    public PrefillWorker(Settings settings, MeshModel meshModel, MiniMaxModel model) {
        this(settings, meshModel, model, OpenTelemetry.noop());
    }

    /**
     * @param otel spans: "lightmesh.prefill" per record (continuing the trace in the record's headers; expert calls of
     *             the forward pass are its children) and "lightmesh.state send"; metrics: prefill time, queue time
     */
    public PrefillWorker(Settings settings, MeshModel meshModel, MiniMaxModel model, OpenTelemetry otel) {
        Tracer tracer = otel.getTracer(MeshTelemetry.SCOPE);
        this.model = model;
        this.metrics = new PrefillMetrics(otel, settings.workerId());
        this.prefilled = metrics.prefilled;
        this.batches = metrics.batches;
        this.largestBatch = metrics.largestBatch;
        this.stateBytesSent = metrics.stateBytesSent;
        this.prefixCache = settings.prefixCacheBytes() > 0 ? new PrefixCache(model.config(), settings.prefixCacheBytes()) : null;
        metrics.observeCache(prefixCache);
        WorkerPath.announce("prefill", settings.workerId(), model, otel);
        this.topic = RequestTopic.subscribe(settings);
        metrics.observeLag(topic::lag);
        this.shipper = new StateShipper(meshModel, settings.chunkBytes(), settings.reserveTtlMs(), metrics, tracer);
        PrefillPass pass = new PrefillPass(model, new CachedPrefill(model, prefixCache), settings.batchTokens(), shipper, metrics);
        this.loop = new PrefillLoop(settings.workerId(), settings.retryBackoffMs(), topic, pass, shipper, tracer);
        loop.start();
    }

    public void setHook(Hook hook) { loop.setHook(hook); }

    public boolean busy() { return loop.busy(); }

    /** The worker's prefix cache, or null when it is off. */
    public PrefixCache prefixCache() { return prefixCache; }

    /** Records on its partitions not consumed yet (Kafka's records-lag, summed). */
    long lag() { return topic.lag(); }

    /** Stops abruptly, as a kill would: no commit, leaves the group. */
    @Override
    public void close() {
        metrics.close();
        loop.close();
        shipper.close();
    }
}
