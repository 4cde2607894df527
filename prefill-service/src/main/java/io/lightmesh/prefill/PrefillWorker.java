package io.lightmesh.prefill;

import io.grpc.ManagedChannel;
import io.lightmesh.engine.generate.Generation;
import io.lightmesh.engine.generate.PromptLogprobs;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.prefix.CachedPrefill;
import io.lightmesh.engine.prefix.PrefixCache;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.mesh.Specs;
import io.lightmesh.proto.v1.AckStatus;
import io.lightmesh.proto.v1.FirstToken;
import io.lightmesh.proto.v1.CancelRequest;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.PrefillTask;
import io.lightmesh.proto.v1.ReserveRequest;
import io.lightmesh.proto.v1.ReserveResponse;
import io.lightmesh.proto.v1.StateAck;
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
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.logging.Logger;

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
 */
public final class PrefillWorker implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(PrefillWorker.class.getName());

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

    private final Settings settings;
    private final MeshModel meshModel;
    private final MiniMaxModel model;
    /** The worker's prefix cache, shared by all its requests; null when off. */
    private final PrefixCache prefixCache;
    private final CachedPrefill cachedPrefill;
    private final AutoCloseable cacheMetrics;
    private final KafkaConsumer<String, byte[]> consumer;
    private final io.opentelemetry.api.metrics.ObservableLongGauge lagGauge;
    private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    private final Set<String> done = Collections.newSetFromMap(new LinkedHashMap<>(1024, 0.75f, false) {
        @Override protected boolean removeEldestEntry(Map.Entry<String, Boolean> e) { return size() > 100_000; }
    });
    private final Thread thread;
    private volatile boolean running = true;
    private volatile Hook hook = t -> {};
    private volatile boolean busy;
    public final LongAdder prefilled = new LongAdder();
    /** Batched forward passes run, and the most requests one of them carried. */
    public final LongAdder batches = new LongAdder();
    public final java.util.concurrent.atomic.AtomicInteger largestBatch = new java.util.concurrent.atomic.AtomicInteger();
    public final AtomicLong stateBytesSent = new AtomicLong();

    private final Tracer tracer;
    private final DoubleHistogram prefillSeconds, queueSeconds;

    /** The path this worker's engine runs (decode, prefill, experts, micro-batching). */
    public io.lightmesh.engine.model.ForwardPath path() { return model.path(); }

    /** The path as health data ({@link io.lightmesh.mesh.WorkerPath#healthData}). */
    public Map<String, Object> pathData() { return io.lightmesh.mesh.WorkerPath.healthData(model); }

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
                .setDescription("Forward pass over a request's context on a prefill worker (that of its whole batch)").build();
        this.queueSeconds = meter.histogramBuilder("lightmesh.prefill.queue.duration").setUnit("s")
                .setDescription("From admission by the router until a prefill worker took the request").build();
        this.settings = settings;
        this.meshModel = meshModel;
        this.model = model;
        this.prefixCache = settings.prefixCacheBytes() > 0 ? new PrefixCache(model.config(), settings.prefixCacheBytes()) : null;
        this.cachedPrefill = new CachedPrefill(model, prefixCache);
        this.cacheMetrics = prefixCache == null ? () -> {} : PrefixCacheMetrics.register(meter, prefixCache, settings.workerId());
        io.lightmesh.mesh.WorkerPath.announce("prefill", settings.workerId(), model, otel);
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, settings.bootstrapServers());
        p.put(ConsumerConfig.GROUP_ID_CONFIG, settings.groupId());
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, settings.workerId());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, String.valueOf(settings.batchMax()));
        // a killed or frozen member's partitions (and their uncommitted records) go to another member once its heartbeats
        // (every 3 s, from the consumer's own thread, not the prefill loop) stop for this long: 10 s rather than 45 s
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "3000");
        // sticky: a rebalance moves as few partitions as it can, so a conversation's key keeps reaching the worker
        // whose prefix cache holds it (a partition that moves costs its conversations one cache miss, not an error)
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, org.apache.kafka.clients.consumer.StickyAssignor.class.getName());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        io.lightmesh.mesh.KafkaBackoff.quietRebootstrapLog();
        this.consumer = new KafkaConsumer<>(io.lightmesh.mesh.KafkaBackoff.client(p));
        consumer.subscribe(List.of(settings.topic()));
        this.lagGauge = meter.gaugeBuilder("lightmesh.prefill.consumer.lag").ofLongs().setUnit("{record}")
                .setDescription("Records on the request topic's partitions assigned to this worker not yet consumed (Kafka's records-lag, summed)")
                .buildWithCallback(m -> m.record(lag(), io.opentelemetry.api.common.Attributes.of(
                        io.opentelemetry.api.common.AttributeKey.stringKey("lightmesh.worker"), settings.workerId())));
        thread = new Thread(this::run, "prefill-" + settings.workerId());
        thread.setDaemon(true);
        thread.start();
    }

    public void setHook(Hook hook) { this.hook = hook; }

    public boolean busy() { return busy; }

    /** The worker's prefix cache, or null when it is off. */
    public PrefixCache prefixCache() { return prefixCache; }

    private void run() {
        try {
            while (running) {
                ConsumerRecords<String, byte[]> records = consumer.poll(Duration.ofMillis(100));
                if (records.isEmpty()) continue;
                List<Job> batch = take(records);
                busy = true;
                try {
                    handle(batch);
                } finally {
                    busy = false;
                }
                if (!running) return;
                settle(batch);
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

    /** One record of a batch, and what became of it. */
    private static final class Job {
        final ConsumerRecord<String, byte[]> record;
        final TopicPartition tp;
        final PrefillTask task;   // null: unreadable
        Span span;
        String key;               // request id # attempt
        int[] context;
        com.google.common.util.concurrent.ListenableFuture<ReserveResponse> reservation;
        long queueUs, prefillUs; // prefillUs: the batch's forward pass
        SequenceState state;
        float[] logits;
        List<io.lightmesh.proto.v1.TokenLogprob> promptLogprobs = List.of(); // when the spec asks for them
        int cachedTokens;         // context tokens restored from the prefix cache
        Boolean commit;           // null while the job is still being worked on; then whether its offset may be committed

        Job(ConsumerRecord<String, byte[]> record, PrefillTask task) {
            this.record = record;
            this.tp = new TopicPartition(record.topic(), record.partition());
            this.task = task;
        }

        int tokens() { return task == null ? 0 : task.getSpec().getPromptTokensCount() + task.getSpec().getGeneratedTokensCount(); }

        boolean open() { return commit == null; }
    }

    /**
     * The batch of a poll: records in order while their contexts fit the token budget (the first always does);
     * each partition's first record left out, and everything after it, is sought back to, for the next poll.
     */
    private List<Job> take(ConsumerRecords<String, byte[]> records) {
        List<Job> batch = new ArrayList<>();
        long tokens = 0;
        for (TopicPartition tp : records.partitions()) {
            for (ConsumerRecord<String, byte[]> r : records.records(tp)) {
                PrefillTask task;
                try {
                    task = PrefillTask.parseFrom(r.value());
                } catch (Exception e) {
                    LOG.warning("dropping unreadable record at " + r.topic() + "-" + r.partition() + "@" + r.offset() + ": " + e);
                    task = null;
                }
                Job j = new Job(r, task);
                if (!batch.isEmpty() && (tokens + j.tokens() > settings.batchTokens() || batch.size() >= settings.batchMax())) {
                    consumer.seek(tp, r.offset());
                    break;
                }
                batch.add(j);
                tokens += j.tokens();
            }
        }
        return batch;
    }

    /**
     * Commits each partition up to its last record in an unbroken run of finished ones; a record to retry (not
     * shipped: decode full or unreachable) is sought back to, with what follows it, and taken again after a pause.
     * Commits are asynchronous: were this worker to die before one lands, the record would be redelivered and
     * dropped as a duplicate.
     */
    private void settle(List<Job> batch) {
        Map<TopicPartition, OffsetAndMetadata> commits = new HashMap<>();
        Set<TopicPartition> retry = new HashSet<>();
        for (Job j : batch) { // per partition in offset order
            if (retry.contains(j.tp)) continue;
            if (Boolean.TRUE.equals(j.commit)) {
                commits.put(j.tp, new OffsetAndMetadata(j.record.offset() + 1));
            } else {
                consumer.seek(j.tp, j.record.offset());
                retry.add(j.tp);
            }
        }
        if (!commits.isEmpty()) {
            consumer.commitAsync(commits, (offsets, err) -> {
                if (err != null) LOG.warning("commit of " + offsets + " failed: " + err);
            });
        }
        if (!retry.isEmpty()) sleep(settings.retryBackoffMs());
    }

    /** Works on a batch, each record in the trace its headers carry; sets each job's commit. */
    private void handle(List<Job> batch) {
        for (Job j : batch) {
            j.span = tracer.spanBuilder("lightmesh.prefill").setSpanKind(SpanKind.CONSUMER).setParent(MeshTelemetry.extract(j.record.headers()))
                    .setAttribute("messaging.system", "kafka").setAttribute("messaging.destination.name", j.record.topic())
                    .setAttribute("messaging.kafka.offset", j.record.offset()).setAttribute("lightmesh.worker", settings.workerId())
                    .setAttribute("lightmesh.batch_size", batch.size()).startSpan();
        }
        try {
            Set<String> keys = new HashSet<>();
            for (Job j : batch) {
                try (Scope ignored = j.span.makeCurrent()) {
                    prepare(j, keys);
                }
            }
            prefill(batch.stream().filter(Job::open).toList());
            for (Job j : batch) {
                if (!j.open()) continue;
                try (Scope ignored = j.span.makeCurrent()) {
                    j.commit = ship(j);
                } finally {
                    if (j.state != null) j.state.discardDevice(); // device memory back now, not at the next GC
                    j.state = null; // shipped or not, this copy is no longer needed
                }
            }
        } catch (RuntimeException e) {
            for (Job j : batch) j.span.setStatus(StatusCode.ERROR, e.toString());
            throw e;
        } finally {
            for (Job j : batch) {
                j.span.setAttribute("lightmesh.committed", Boolean.TRUE.equals(j.commit));
                j.span.end();
            }
        }
    }

    /** Before the forward pass: drops what needs no work, and asks the decode worker to reserve room. */
    private void prepare(Job j, Set<String> keys) {
        if (j.task == null) { j.commit = true; return; }
        hook.taken(j.task);
        GenerationSpec spec = j.task.getSpec();
        String id = spec.getRequestId();
        j.span.setAttribute("lightmesh.request_id", id).setAttribute("lightmesh.attempt", j.task.getAttempt());
        j.key = id + "#" + j.task.getAttempt();
        if (done.contains(j.key) || !keys.add(j.key)) { // shipped before, or twice in this batch
            LOG.fine("dropping duplicate of " + j.key);
            j.commit = true;
            return;
        }
        if (spec.getDeadlineUnixMs() > 0 && spec.getDeadlineUnixMs() < System.currentTimeMillis()) { j.commit = true; return; }
        j.context = Specs.context(spec);
        try {
            long need = StateCodec.serialisedBytes(meshModel.config(), j.context.length + (long) spec.getSampling().getMaxNewTokens())
                    * Specs.choices(spec); // the decode worker holds a copy of the state per choice
            // reserve room on the decode worker while prefilling (one round trip saved); after a refusal by this target,
            // wait for the answer first, so that a full decode worker does not make this one prefill in vain
            j.reservation = StateTransferGrpc.newFutureStub(channel(j.task.getDecodeTarget())).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .reserve(ReserveRequest.newBuilder().setRequestId(id).setBytes(need).setTtlMs((int) settings.reserveTtlMs()).build());
            if (refusedBy.contains(j.task.getDecodeTarget()) && !granted(j.reservation, j.task, id)) j.commit = false;
        } catch (io.grpc.StatusRuntimeException e) {
            j.commit = unreachable(j, e);
        }
        j.queueUs = Math.max(0, System.currentTimeMillis() * 1000 - spec.getAdmittedUnixUs());
    }

    /**
     * One batched prefill over every open job (the first job's span is current, so the expert calls of the forward
     * pass join its trace), then each first token, drawn by the engine's rules after the tokens generated so far
     * (a resume replays them). A context the engine refuses is found by running the jobs one at a time, and dropped.
     */
    private void prefill(List<Job> jobs) {
        if (jobs.isEmpty()) return;
        List<Job> scored = jobs.stream().filter(j -> Specs.promptLogprobs(j.task.getSpec()) >= 0).toList();
        if (!scored.isEmpty()) { // prompt log-probabilities need the logits of every position: one at a time
            for (Job j : scored) prefillScoring(j);
            jobs = jobs.stream().filter(j -> Specs.promptLogprobs(j.task.getSpec()) < 0).toList();
            if (jobs.isEmpty()) return;
        }
        long t0 = System.nanoTime();
        try (Scope ignored = jobs.getFirst().span.makeCurrent()) {
            List<CachedPrefill.Result> done = cachedPrefill.prefill(jobs.stream().map(j -> j.context).toList(), settings.batchTokens());
            for (int i = 0; i < jobs.size(); i++) {
                Job j = jobs.get(i);
                j.state = done.get(i).state();
                j.logits = done.get(i).logits();
                j.cachedTokens = done.get(i).cachedTokens();
            }
        } catch (IllegalArgumentException e) {
            if (jobs.size() == 1) { drop(jobs.getFirst(), e); return; }
            for (Job j : jobs) prefill(List.of(j)); // the batch left every state untouched
            return;
        } catch (io.grpc.StatusRuntimeException e) {
            if (e.getStatus().getCode() == io.grpc.Status.Code.UNAVAILABLE) {
                // no expert shard for some (layer, expert), and no placement covering it came in time (RemoteExperts
                // waited already): fail the requests now, through their decode workers, rather than retry them
                LOG.warning("prefill of a batch of " + jobs.size() + " failed: " + e.getStatus() + "; failing its requests");
                for (Job j : jobs) unavailable(j, e.getStatus());
                return;
            }
            // anything else: every job of the batch is taken again later
            LOG.info("prefill of a batch of " + jobs.size() + " failed: " + e.getStatus());
            for (Job j : jobs) j.commit = false;
            return;
        }
        long us = (System.nanoTime() - t0) / 1000;
        batches.increment();
        largestBatch.accumulateAndGet(jobs.size(), Math::max);
        for (Job j : jobs) {
            j.prefillUs = us;
            prefillSeconds.record(us / 1e6);
            queueSeconds.record(j.queueUs / 1e6);
            j.span.setAttribute("lightmesh.context_tokens", j.context.length).setAttribute("lightmesh.cached_tokens", j.cachedTokens);
        }
    }

    /**
     * Prefill of one job that asks for its prompt's log-probabilities (raw logits at every position, the engine's
     * {@link PromptLogprobs}); a resume's context also holds generated tokens, whose scores are not the prompt's.
     */
    private void prefillScoring(Job j) {
        long t0 = System.nanoTime();
        j.state = model.newState();
        GenerationSpec spec = j.task.getSpec();
        try (Scope ignored = j.span.makeCurrent()) {
            PromptLogprobs.Result r = PromptLogprobs.prefill(model, j.state, j.context, Specs.promptLogprobs(spec));
            j.logits = r.lastLogits();
            int prompt = spec.getPromptTokensCount() - 1;
            j.promptLogprobs = r.logprobs().subList(0, prompt).stream().map(Specs::logprob).toList();
        } catch (IllegalArgumentException e) {
            drop(j, e);
            return;
        } catch (io.grpc.StatusRuntimeException e) {
            LOG.info("prefill of " + j.key + " failed: " + e.getStatus());
            if (e.getStatus().getCode() == io.grpc.Status.Code.UNAVAILABLE) unavailable(j, e.getStatus());
            else j.commit = false;
            return;
        }
        j.prefillUs = (System.nanoTime() - t0) / 1000;
        batches.increment();
        largestBatch.accumulateAndGet(1, Math::max);
        prefillSeconds.record(j.prefillUs / 1e6);
        queueSeconds.record(j.queueUs / 1e6);
        j.span.setAttribute("lightmesh.context_tokens", j.context.length);
    }

    /**
     * The request cannot be prefilled now: its decode worker fails its Generate call with UNAVAILABLE (the router
     * resumes it or answers 503 at once), and the record is committed. When the decode worker cannot be told, the
     * record is taken again later.
     */
    private void unavailable(Job j, io.grpc.Status cause) {
        String id = j.task.getSpec().getRequestId();
        try {
            DecodeGrpc.newBlockingStub(channel(j.task.getDecodeTarget())).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .cancel(CancelRequest.newBuilder().setRequestId(id).setUnavailable(true)
                            .setReason("prefill failed: " + cause.getDescription()).build());
            done.add(j.key);
            j.commit = true;
        } catch (io.grpc.StatusRuntimeException e) {
            LOG.info("cannot fail " + id + " on " + j.task.getDecodeTarget() + ": " + e.getStatus());
            j.commit = false;
        }
        j.state = null;
    }

    private void drop(Job j, IllegalArgumentException e) {
        // a record no worker can process (the router validates, so a bug or a foreign producer)
        LOG.severe("dropping request " + j.key + ": " + e.getMessage());
        done.add(j.key);
        j.commit = true;
        j.state = null;
    }

    /** Draws the first token and ships the state to the record's decode worker; true when the offset may be committed. */
    private boolean ship(Job j) {
        GenerationSpec spec = j.task.getSpec();
        String id = spec.getRequestId();
        try {
            // each choice's first token, drawn by the engine's rules with the choice's seed from the same logits
            Generation.Step first = Specs.resume(spec, j.state, meshModel.tokenizer()).accept(j.logits);
            if (!granted(j.reservation, j.task, id)) return false;
            StateHeader.Builder h = StateHeader.newBuilder().setRequestId(id).setModelFingerprint(meshModel.fingerprint())
                    .setNextToken(first.token()).setSpec(spec).setQueueUs(j.queueUs).setPrefillUs(j.prefillUs)
                    .addAllPromptLogprobs(j.promptLogprobs).setCachedTokens(j.cachedTokens);
            if (first.logprob() != null) h.setNextTokenLogprob(Specs.logprob(first.logprob()));
            for (int c = 1; c < Specs.choices(spec); c++) {
                Generation.Step other = Specs.resume(spec, c, null, meshModel.tokenizer()).accept(j.logits);
                FirstToken.Builder f = FirstToken.newBuilder().setTokenId(other.token());
                if (other.logprob() != null) f.setLogprob(Specs.logprob(other.logprob()));
                h.addOtherChoices(f);
            }
            StateCodec.Sender chunks = StateCodec.sender(h, j.state, settings.chunkBytes());
            Span send = tracer.spanBuilder("lightmesh.state send").setSpanKind(SpanKind.CLIENT)
                    .setAttribute("lightmesh.decode_target", j.task.getDecodeTarget()).setAttribute("lightmesh.state_bytes", chunks.totalBytes()).startSpan();
            StateAck ack;
            try (Scope s = send.makeCurrent()) { // the decode worker's spans continue from here (gRPC metadata)
                ack = StateCodec.send(StateTransferGrpc.newStub(channel(j.task.getDecodeTarget())), chunks);
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
                done.add(j.key);
                return true;
            }
            LOG.info("state for " + id + " not accepted (" + st + "): " + ack.getDetail());
            return false;
        } catch (IllegalArgumentException e) {
            drop(j, e);
            return true;
        } catch (io.grpc.StatusRuntimeException e) {
            return unreachable(j, e);
        }
    }

    /** A failed call to the decode worker: whether to commit (drop this copy) or take the record again later. */
    private boolean unreachable(Job j, io.grpc.StatusRuntimeException e) {
        String id = j.task.getSpec().getRequestId();
        if (e.getStatus().getCode() == io.grpc.Status.Code.INVALID_ARGUMENT) {
            // the decode worker refused the stream as malformed: sending it again cannot help (a bug); drop it
            LOG.severe("state for " + id + " refused by " + j.task.getDecodeTarget() + ": " + e.getStatus());
            done.add(j.key);
            return true;
        }
        // DATA_LOSS (damaged in transit): send again later. Otherwise the decode worker is gone: the router re-queues
        // the request elsewhere when it notices; drop this copy once unreachable long enough
        LOG.info("decode worker " + j.task.getDecodeTarget() + " unreachable for " + id + ": " + e.getStatus());
        return e.getStatus().getCode() == io.grpc.Status.Code.UNAVAILABLE && unreachableLong(j.task);
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

    /**
     * The consumer's lag on its assigned partitions: the sum of its per-partition {@code records-lag} metrics (the
     * consumer's metrics are safe to read from another thread; NaN before a partition's first fetch counts 0).
     */
    long lag() {
        long sum = 0;
        for (var e : consumer.metrics().entrySet()) {
            if (!e.getKey().name().equals("records-lag") || !e.getKey().tags().containsKey("partition")) continue;
            Object v = e.getValue().metricValue();
            if (v instanceof Double d && Double.isFinite(d) && d > 0) sum += d.longValue();
        }
        return sum;
    }

    /** Stops abruptly, as a kill would: no commit, leaves the group. */
    @Override
    public void close() {
        lagGauge.close();
        running = false;
        consumer.wakeup();
        try { thread.join(5000); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        for (ManagedChannel c : channels.values()) Grpc.shutdown(c);
        try { cacheMetrics.close(); } catch (Exception e) { LOG.fine("closing prefix cache metrics: " + e); }
    }
}
