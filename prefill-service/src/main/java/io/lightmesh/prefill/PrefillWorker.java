package io.lightmesh.prefill;

import io.grpc.ManagedChannel;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.mesh.Specs;
import io.lightmesh.proto.v1.AckStatus;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.PrefillTask;
import io.lightmesh.proto.v1.ReserveRequest;
import io.lightmesh.proto.v1.ReserveResponse;
import io.lightmesh.proto.v1.StateAck;
import io.lightmesh.proto.v1.StateChunk;
import io.lightmesh.proto.v1.StateHeader;
import io.lightmesh.proto.v1.StateTransferGrpc;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.metrics.DoubleHistogram;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Scope;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

import java.time.Duration;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.logging.Logger;

/**
 * A prefill worker: one member of the consumer group on the request topic. It fetches one record at a time (so it
 * takes work only when idle), reserves room on the record's decode worker, prefills, draws the first token, ships
 * the state, and commits the record's offset only once the decode worker acknowledged the state. A worker that
 * dies before committing leaves the record to the next group member; the decode worker drops the duplicate by
 * request id.
 */
public final class PrefillWorker implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(PrefillWorker.class.getName());

    /** Settings (config keys lightmesh.prefill.*). */
    public record Settings(String workerId, String bootstrapServers, String topic, String groupId, int chunkBytes,
                           long reserveTtlMs, long retryBackoffMs) {}

    /** Test hook: called after a record was taken and before it is worked on; may throw to simulate a crash. */
    public interface Hook { void taken(PrefillTask task); }

    private final Settings settings;
    private final MeshModel meshModel;
    private final MiniMaxModel model;
    private final KafkaConsumer<String, byte[]> consumer;
    private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    private final Set<String> done = Collections.newSetFromMap(new LinkedHashMap<>(1024, 0.75f, false) {
        @Override protected boolean removeEldestEntry(Map.Entry<String, Boolean> e) { return size() > 100_000; }
    });
    private final Thread thread;
    private volatile boolean running = true;
    private volatile Hook hook = t -> {};
    private volatile boolean busy;
    public final LongAdder prefilled = new LongAdder();
    public final AtomicLong stateBytesSent = new AtomicLong();

    private final Tracer tracer;
    private final DoubleHistogram prefillSeconds, queueSeconds;

    public PrefillWorker(Settings settings, MeshModel meshModel, MiniMaxModel model) {
        this(settings, meshModel, model, OpenTelemetry.noop());
    }

    /**
     * @param otel spans: "lightmesh.prefill" per record (continuing the trace in the record's headers; expert calls of
     *             the forward pass are its children) and "lightmesh.state send"; metrics: prefill time, queue time
     */
    public PrefillWorker(Settings settings, MeshModel meshModel, MiniMaxModel model, OpenTelemetry otel) {
        this.tracer = otel.getTracer(MeshTelemetry.SCOPE);
        var meter = otel.getMeter(MeshTelemetry.SCOPE);
        this.prefillSeconds = meter.histogramBuilder("lightmesh.prefill.duration").setUnit("s")
                .setDescription("Forward pass over a request's context on a prefill worker").build();
        this.queueSeconds = meter.histogramBuilder("lightmesh.prefill.queue.duration").setUnit("s")
                .setDescription("From admission by the router until a prefill worker took the request").build();
        this.settings = settings;
        this.meshModel = meshModel;
        this.model = model;
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, settings.bootstrapServers());
        p.put(ConsumerConfig.GROUP_ID_CONFIG, settings.groupId());
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, settings.workerId());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "1");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        this.consumer = new KafkaConsumer<>(p);
        consumer.subscribe(List.of(settings.topic()));
        thread = new Thread(this::run, "prefill-" + settings.workerId());
        thread.setDaemon(true);
        thread.start();
    }

    public void setHook(Hook hook) { this.hook = hook; }

    public boolean busy() { return busy; }

    private void run() {
        try {
            while (running) {
                ConsumerRecords<String, byte[]> records = consumer.poll(Duration.ofMillis(100));
                for (ConsumerRecord<String, byte[]> r : records) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    busy = true;
                    boolean commit;
                    try {
                        commit = handle(r);
                    } finally {
                        busy = false;
                    }
                    if (!running) return;
                    if (commit) {
                        // asynchronous: the next record's work starts at once; were this worker to die before the commit
                        // lands, the record would be redelivered and the decode worker would answer DUPLICATE
                        consumer.commitAsync(Map.of(tp, new OffsetAndMetadata(r.offset() + 1)), (offsets, err) -> {
                            if (err != null) LOG.warning("commit of " + tp + "@" + (r.offset() + 1) + " failed: " + err);
                        });
                    } else {
                        // not shipped (decode full or unreachable): take it again after a pause
                        consumer.seek(tp, r.offset());
                        sleep(settings.retryBackoffMs());
                    }
                }
            }
        } catch (WakeupException e) {
            // closing
        } catch (Crash c) {
            LOG.warning("prefill worker " + settings.workerId() + " crashed (simulated): " + c.getMessage());
        } catch (RuntimeException e) {
            LOG.severe("prefill worker " + settings.workerId() + " stopped: " + e);
        } finally {
            // no commit on the way out: uncommitted work goes to another member
            consumer.close(org.apache.kafka.clients.consumer.CloseOptions.timeout(Duration.ZERO));
        }
    }

    /** Thrown by a test hook to stop the worker as if killed (no commit, leaves the group). */
    public static final class Crash extends RuntimeException {
        public Crash(String m) { super(m); }
    }

    /** Works on one record, in the trace its headers carry; true when its offset may be committed. */
    private boolean handle(ConsumerRecord<String, byte[]> r) {
        Span span = tracer.spanBuilder("lightmesh.prefill").setSpanKind(SpanKind.CONSUMER).setParent(MeshTelemetry.extract(r.headers()))
                .setAttribute("messaging.system", "kafka").setAttribute("messaging.destination.name", r.topic())
                .setAttribute("messaging.kafka.offset", r.offset()).setAttribute("lightmesh.worker", settings.workerId()).startSpan();
        try (Scope ignored = span.makeCurrent()) {
            boolean commit = work(r, span);
            span.setAttribute("lightmesh.committed", commit);
            return commit;
        } catch (RuntimeException e) {
            span.setStatus(StatusCode.ERROR, e.toString());
            throw e;
        } finally {
            span.end();
        }
    }

    private boolean work(ConsumerRecord<String, byte[]> r, Span span) {
        PrefillTask task;
        try {
            task = PrefillTask.parseFrom(r.value());
        } catch (Exception e) {
            LOG.warning("dropping unreadable record at " + r.topic() + "-" + r.partition() + "@" + r.offset() + ": " + e);
            return true;
        }
        hook.taken(task);
        GenerationSpec spec = task.getSpec();
        String id = spec.getRequestId();
        span.setAttribute("lightmesh.request_id", id).setAttribute("lightmesh.attempt", task.getAttempt());
        String key = id + "#" + task.getAttempt();
        if (done.contains(key)) return true;
        if (spec.getDeadlineUnixMs() > 0 && spec.getDeadlineUnixMs() < System.currentTimeMillis()) return true;
        StateTransferGrpc.StateTransferStub async = StateTransferGrpc.newStub(channel(task.getDecodeTarget()));
        int[] context = Specs.context(spec);
        try {
            long need = StateCodec.serialisedBytes(meshModel.config(), context.length + (long) spec.getSampling().getMaxNewTokens());
            // reserve room on the decode worker while prefilling (one round trip saved); after a refusal by this target,
            // reserve first, so that a full decode worker does not make this one prefill in vain
            var reservation = StateTransferGrpc.newFutureStub(channel(task.getDecodeTarget())).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .reserve(ReserveRequest.newBuilder().setRequestId(id).setBytes(need).setTtlMs((int) settings.reserveTtlMs()).build());
            if (refusedBy.contains(task.getDecodeTarget()) && !granted(reservation, task, id)) return false;
            long queueUs = Math.max(0, System.currentTimeMillis() * 1000 - spec.getAdmittedUnixUs());
            long t0 = System.nanoTime();
            SequenceState state = model.newState();
            float[] logits = model.prefill(state, context);
            // the first new token, chosen by the engine's rules after the tokens generated so far (a resume replays them)
            int first = Specs.resume(spec, state, meshModel.tokenizer()).accept(logits).token();
            long prefillUs = (System.nanoTime() - t0) / 1000;
            if (!granted(reservation, task, id)) return false;
            prefillSeconds.record(prefillUs / 1e6);
            queueSeconds.record(queueUs / 1e6);
            span.setAttribute("lightmesh.context_tokens", context.length);
            StateHeader.Builder h = StateHeader.newBuilder().setRequestId(id).setModelFingerprint(meshModel.fingerprint())
                    .setNextToken(first).setSpec(spec).setQueueUs(queueUs).setPrefillUs(prefillUs);
            StateCodec.Sender chunks = StateCodec.sender(h, state, settings.chunkBytes());
            Span send = tracer.spanBuilder("lightmesh.state send").setSpanKind(SpanKind.CLIENT)
                    .setAttribute("lightmesh.decode_target", task.getDecodeTarget()).setAttribute("lightmesh.state_bytes", chunks.totalBytes()).startSpan();
            StateAck ack;
            try (Scope s = send.makeCurrent()) { // the decode worker's spans continue from here (gRPC metadata)
                ack = StateCodec.send(async, chunks);
                send.setAttribute("lightmesh.ack", ack.getStatus().name());
            } catch (RuntimeException e) {
                send.setStatus(StatusCode.ERROR, e.toString());
                throw e;
            } finally {
                send.end();
            }
            prefilled.increment();
            stateBytesSent.addAndGet(chunks.sentBytes());
            AckStatus st = ack.getStatus();
            if (st == AckStatus.ACK_STATUS_ACCEPTED || st == AckStatus.ACK_STATUS_DUPLICATE || st == AckStatus.ACK_STATUS_REJECTED_EXPIRED
                    || st == AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE) {
                if (st == AckStatus.ACK_STATUS_REJECTED_INCOMPATIBLE) LOG.severe("state for " + id + " rejected: " + ack.getDetail());
                done.add(key);
                return true;
            }
            LOG.info("state for " + id + " not accepted (" + st + "): " + ack.getDetail());
            return false;
        } catch (IllegalArgumentException e) {
            // a record no worker can process (the router validates, so a bug or a foreign producer): drop it
            LOG.severe("dropping request " + id + ": " + e.getMessage());
            done.add(key);
            return true;
        } catch (io.grpc.StatusRuntimeException e) {
            if (e.getStatus().getCode() == io.grpc.Status.Code.INVALID_ARGUMENT) {
                // the decode worker refused the stream as malformed: sending it again cannot help (a bug); drop it
                LOG.severe("state for " + id + " refused by " + task.getDecodeTarget() + ": " + e.getStatus());
                done.add(key);
                return true;
            }
            // DATA_LOSS (damaged in transit): send again later. Otherwise the decode worker is gone: the router
            // re-queues the request elsewhere when it notices; drop this copy once unreachable long enough
            LOG.info("decode worker " + task.getDecodeTarget() + " unreachable for " + id + ": " + e.getStatus());
            return e.getStatus().getCode() == io.grpc.Status.Code.UNAVAILABLE && task.getAttempt() >= 0 && unreachableLong(task);
        }
    }

    /** Decode targets whose last answer to a reservation was a refusal. */
    private final Set<String> refusedBy = ConcurrentHashMap.newKeySet();

    /** Waits for a reservation's answer; false (and the target remembered as full) when refused. */
    private boolean granted(com.google.common.util.concurrent.ListenableFuture<ReserveResponse> reservation, PrefillTask task, String id) {
        ReserveResponse rr;
        try {
            rr = reservation.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while reserving", e);
        } catch (java.util.concurrent.ExecutionException e) {
            if (e.getCause() instanceof io.grpc.StatusRuntimeException s) throw s;
            throw new IllegalStateException(e.getCause());
        }
        if (rr.getGranted()) {
            refusedBy.remove(task.getDecodeTarget());
            return true;
        }
        refusedBy.add(task.getDecodeTarget());
        LOG.fine("decode " + task.getDecodeTarget() + " has no room for " + id + ": " + rr.getDetail());
        return false;
    }

    private final Map<String, Long> unreachableSince = new ConcurrentHashMap<>();

    /** A decode target unreachable for 10 s is given up: its request was resumed by the router or is lost. */
    private boolean unreachableLong(PrefillTask task) {
        long now = System.currentTimeMillis();
        long since = unreachableSince.computeIfAbsent(task.getSpec().getRequestId() + "#" + task.getAttempt(), k -> now);
        return now - since > 10_000;
    }

    private ManagedChannel channel(String target) { return channels.computeIfAbsent(target, Grpc::channel); }

    private static void sleep(long ms) {
        try { Thread.sleep(ms); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
    }

    /** Stops abruptly, as a kill would: no commit, leaves the group. */
    @Override
    public void close() {
        running = false;
        consumer.wakeup();
        try { thread.join(5000); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        for (ManagedChannel c : channels.values()) Grpc.shutdown(c);
    }
}
