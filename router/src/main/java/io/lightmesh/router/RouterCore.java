package io.lightmesh.router;

import io.grpc.BindableService;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.KafkaBackoff;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.Specs;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.proto.v1.Choice;
import io.lightmesh.proto.v1.ComponentHealth;
import io.lightmesh.proto.v1.DecodeEvent;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.lightmesh.proto.v1.DecodeRequest;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.HealthRequest;
import io.lightmesh.proto.v1.HealthResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.LayerKind;
import io.lightmesh.proto.v1.ModelInfo;
import io.lightmesh.proto.v1.ModelInfoRequest;
import io.lightmesh.proto.v1.PrefillTask;
import io.lightmesh.proto.v1.RequestStats;
import io.lightmesh.proto.v1.ServingStatus;
import io.lightmesh.proto.v1.TokenLogprob;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.TokenizeResponse;
import io.lightmesh.proto.v1.Usage;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.metrics.DoubleHistogram;
import io.opentelemetry.api.metrics.Meter;
import io.opentelemetry.api.metrics.ObservableLongGauge;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Scope;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeConsumerGroupsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import java.util.logging.Logger;

/**
 * The router: serves the public Inference API. Validates and admits requests (bounded; RESOURCE_EXHAUSTED when
 * full), picks a decode worker, follows its token stream, queues the request on Kafka for prefill (keyed by
 * conversation), relays tokens to the client, and resumes on another decode worker when one is lost (prompt plus
 * the tokens delivered so far are prefilled again). Client cancellation and deadlines propagate through the gRPC
 * context to the decode worker, which frees the sequence.
 */
public final class RouterCore implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(RouterCore.class.getName());

    /** Settings (config keys lightmesh.router.*). */
    public record Settings(String bootstrapServers, String topic, int partitions, String prefillGroup,
                           List<String> decodeTargets, List<String> expertTargets, int maxInFlight,
                           int defaultMaxNewTokens, int maxPromptTokens, int maxResumes, long pollMs) {}

    private final Settings settings;
    /** The decode workers and expert shards now: the settings' fixed lists, or discovered ones that change. */
    private final Supplier<List<String>> decodeTargets, expertTargets;
    private final MeshModel model;
    private final Prompts prompts;
    private final LogprobText logprobText;
    private final RequestValidator validator;
    private final KafkaProducer<String, byte[]> producer;
    private final Admin admin;
    private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    private final Map<String, WorkerInfo> decodeInfo = new ConcurrentHashMap<>();   // reachable decode workers
    private final Map<String, String> decodeErrors = new ConcurrentHashMap<>();
    private final Map<String, WorkerInfo> expertInfo = new ConcurrentHashMap<>();
    private final Map<String, String> expertErrors = new ConcurrentHashMap<>();
    private volatile int prefillMembers = -1;
    private volatile String kafkaError = "not checked yet";
    private final AtomicInteger inFlight = new AtomicInteger();
    /** Requests queued for prefill (an attempt launched, no token back yet): the queue depth metric. */
    private final AtomicInteger queued = new AtomicInteger();
    private final Tracer tracer;
    private final DoubleHistogram ttft, tpot;
    private final List<ObservableLongGauge> gauges = new ArrayList<>();
    static final AttributeKey<String> REQUEST_ID = AttributeKey.stringKey("lightmesh.request_id");
    private final ScheduledExecutorService poller = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "router-poller");
        t.setDaemon(true);
        return t;
    });

    public RouterCore(Settings settings, MeshModel model) {
        this(settings, model, OpenTelemetry.noop());
    }

    /**
     * @param otel where the router's spans (one "lightmesh.generate" per request, parent of everything the request
     *             causes in the mesh) and metrics (queue depth, requests in flight, TTFT, TPOT) go
     */
    public RouterCore(Settings settings, MeshModel model, OpenTelemetry otel) {
        this(settings, model, otel, RequestLimits.defaults());
    }

    /** @param limits what one request may ask for beyond the prompt limit of {@code settings} (max tokens, messages, tools, stops) */
    public RouterCore(Settings settings, MeshModel model, OpenTelemetry otel, RequestLimits limits) {
        this(settings, settings::decodeTargets, settings::expertTargets, model, otel, limits);
    }

    /**
     * @param decodeTargets the decode workers now (e.g. a {@code PeerSet}): asked at every poll and request, so workers
     *                      join and leave without a restart; the settings' own lists are not used
     * @param expertTargets the expert shards now, for readiness
     * @param limits        as above
     */
    public RouterCore(Settings settings, Supplier<List<String>> decodeTargets, Supplier<List<String>> expertTargets, MeshModel model,
                      OpenTelemetry otel, RequestLimits limits) {
        this.settings = settings;
        this.decodeTargets = decodeTargets;
        this.expertTargets = expertTargets;
        this.model = model;
        this.tracer = otel.getTracer(MeshTelemetry.SCOPE);
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
        this.prompts = new Prompts(model.tokenizer(), model.dir().getFileName().toString());
        this.logprobText = new LogprobText(model.tokenizer());
        this.validator = new RequestValidator(model.config(), model.tokenizer(), modelId(), settings.maxPromptTokens(),
                settings.defaultMaxNewTokens(), limits);
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, settings.bootstrapServers());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        // send() blocks the calling (gRPC) thread while the topic's metadata is unknown (the broker restarting) or the
        // buffer is full: at most this long (a restart must fit in it), then the request fails with UNAVAILABLE naming
        // Kafka; a record buffered while the broker is away is retried until delivery.timeout.ms (120 s), then the same
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        KafkaBackoff.quietRebootstrapLog();
        producer = new KafkaProducer<>(KafkaBackoff.client(p));
        Properties a = KafkaBackoff.admin(new Properties());
        a.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, settings.bootstrapServers());
        admin = Admin.create(a);
        ensureTopic(admin, settings.topic(), settings.partitions());
        poller.scheduleWithFixedDelay(this::poll, 0, settings.pollMs(), TimeUnit.MILLISECONDS);
    }

    /** Creates the request topic when missing (replication 1 on a one-broker cluster, else 3 at most). */
    public static void ensureTopic(Admin admin, String topic, int partitions) {
        try {
            int brokers = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS).size();
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) Math.min(3, brokers)))).all().get(30, TimeUnit.SECONDS);
        } catch (java.util.concurrent.ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) throw new IllegalStateException("cannot create topic " + topic + ": " + e.getCause(), e.getCause());
        } catch (Exception e) {
            throw new IllegalStateException("cannot create topic " + topic + ": " + e, e);
        }
    }

    public List<BindableService> services() { return List.of(new InferenceService()); }

    /**
     * Channels to workers run their callbacks on the transport thread: a decode event is folded and relayed to the
     * client there, without a hand-off to an executor per token.
     */
    private ManagedChannel channel(String target) { return channels.computeIfAbsent(target, Grpc::directChannel); }

    // ---- discovery and health ----

    private void poll() {
        List<String> decode = decodeTargets.get(), experts = expertTargets.get();
        for (String t : decode) describe(t, decodeInfo, decodeErrors);
        for (String t : experts) describe(t, expertInfo, expertErrors);
        forgetGone(decode, experts);
        try {
            // each admin call bounded as its wait is: a call left behind would wait for the broker the admin client's
            // default.api.timeout.ms (60 s), and every call waiting re-bootstraps the client (KafkaBackoff)
            admin.describeCluster(new DescribeClusterOptions().timeoutMs(5000)).nodes().get(6, TimeUnit.SECONDS);
            kafkaError = null;
        } catch (Exception e) {
            kafkaError = String.valueOf(e.getCause() != null ? e.getCause() : e);
        }
        if (kafkaError != null) {
            prefillMembers = -1; // no group to look up while the broker is away
            return;
        }
        try {
            ConsumerGroupDescription g = admin.describeConsumerGroups(List.of(settings.prefillGroup()), new DescribeConsumerGroupsOptions().timeoutMs(10_000))
                    .describedGroups().get(settings.prefillGroup()).get(11, TimeUnit.SECONDS);
            prefillMembers = g.members().size();
        } catch (Exception e) {
            LOG.fine("prefill group lookup failed: " + e);
            prefillMembers = -1;
        }
    }

    private void describe(String target, Map<String, WorkerInfo> info, Map<String, String> errors) {
        try {
            WorkerInfo w = WorkerGrpc.newBlockingStub(channel(target)).withDeadlineAfter(1, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
            if (!w.getModelFingerprint().equals(model.fingerprint())) {
                info.remove(target);
                String wrong = "runs model " + w.getModelFingerprint() + ", router has " + model.fingerprint();
                // a misconfiguration (another checkpoint): said once at WARNING, not left to the readiness data alone
                if (!wrong.equals(errors.put(target, wrong))) LOG.warning(w.getWorkerId() + " at " + target + " " + wrong + "; not used (lightmesh.model differs)");
                return;
            }
            info.put(target, w);
            errors.remove(target);
        } catch (StatusRuntimeException e) {
            info.remove(target);
            errors.put(target, e.getStatus().toString());
        }
    }

    /** Peers no longer listed (pods gone): their state and channels go, so the maps do not grow with pod churn. */
    private void forgetGone(List<String> decode, List<String> experts) {
        decodeInfo.keySet().retainAll(decode);
        decodeErrors.keySet().retainAll(decode);
        expertInfo.keySet().retainAll(experts);
        expertErrors.keySet().retainAll(experts);
        for (String t : List.copyOf(channels.keySet())) {
            if (!decode.contains(t) && !experts.contains(t)) {
                ManagedChannel ch = channels.remove(t);
                if (ch != null) ch.shutdown(); // calls still on it (a request being resumed) finish
            }
        }
    }

    /** Refreshes discovery now (tests, and the launcher before it reports readiness). */
    public void refresh() { poll(); }

    public HealthResponse health() {
        List<ComponentHealth> parts = new ArrayList<>();
        boolean ok = kafkaError == null;
        parts.add(ComponentHealth.newBuilder().setName("kafka").setAddress(settings.bootstrapServers()).setReachable(kafkaError == null)
                .setDetail(kafkaError == null ? "topic " + settings.topic() : kafkaError).build());
        parts.add(ComponentHealth.newBuilder().setName("prefill").setReachable(prefillMembers > 0)
                .setDetail(prefillMembers + " consumer(s) in group " + settings.prefillGroup()).build());
        ok &= prefillMembers > 0;
        boolean anyDecode = false;
        for (String t : decodeTargets.get()) {
            WorkerInfo w = decodeInfo.get(t);
            anyDecode |= w != null;
            parts.add(ComponentHealth.newBuilder().setName("decode/" + (w != null ? w.getWorkerId() : t)).setAddress(t).setReachable(w != null)
                    .setDetail(w != null ? w.getLoad().getActiveSequences() + " sequences, " + w.getLoad().getStateBytesUsed() + " of "
                            + w.getLoad().getStateBytesBudget() + " state bytes" : decodeErrors.getOrDefault(t, "not checked yet")).build());
        }
        ok &= anyDecode;
        List<String> expertList = expertTargets.get();
        if (!expertList.isEmpty()) {
            List<ExpertPlacement.Shard> shards = new ArrayList<>();
            for (String t : expertList) {
                WorkerInfo w = expertInfo.get(t);
                if (w != null) {
                    shards.add(ExpertPlacement.Shard.fromWorkerInfo(w, t));
                }
                parts.add(ComponentHealth.newBuilder().setName("expert/" + (w != null ? w.getWorkerId() : t)).setAddress(t).setReachable(w != null)
                        .setDetail(w != null ? w.getLoad().getBatchesServed() + " batches served" : expertErrors.getOrDefault(t, "not checked yet")).build());
            }
            List<String> missing = new ExpertPlacement(model.config().numLayers(), model.config().numExperts(), shards).missing();
            ok &= missing.isEmpty();
            parts.add(ComponentHealth.newBuilder().setName("experts").setReachable(missing.isEmpty())
                    .setDetail(missing.isEmpty() ? "every (layer, expert) has a reachable shard" : missing.size() + " (layer, expert) pairs without a shard, e.g. " + missing.get(0)).build());
        }
        return HealthResponse.newBuilder().setStatus(ok ? ServingStatus.SERVING_STATUS_SERVING : ServingStatus.SERVING_STATUS_NOT_SERVING)
                .addAllComponents(parts).build();
    }

    /** The reachable decode worker with the most free state budget per live sequence; null when none. */
    private String pickDecode(Set<String> avoid) {
        String best = null;
        double bestScore = Double.NEGATIVE_INFINITY;
        List<String> targets = decodeTargets.get();
        for (String t : targets) {
            WorkerInfo w = decodeInfo.get(t);
            if (w == null || avoid.contains(t)) continue;
            double free = w.getLoad().getStateBytesBudget() - w.getLoad().getStateBytesUsed();
            double score = free / (1 + w.getLoad().getActiveSequences() + w.getLoad().getPendingSequences());
            if (score > bestScore) { bestScore = score; best = t; }
        }
        if (best == null) for (String t : targets) if (!avoid.contains(t)) return t; // not polled yet
        return best;
    }

    // ---- validation ----

    /** The resolved spec (template applied, defaults filled in), or INVALID_ARGUMENT naming the field or limit. */
    GenerationSpec validate(GenerateRequest r, String id) { return validator.validate(r, id); }

    // ---- one request through the mesh ----

    /** Where a request's output goes: the streaming or the unary handler. */
    private interface Sink {
        /**
         * One decode event's worth for choice {@code choice}: the new token ids (eos excluded), what they add for the
         * client, their log-probabilities (when asked for), and the prompt's (once, with the first event).
         */
        void delta(int choice, List<Integer> ids, Answer.Delta delta, List<TokenLogprob> logprobs, List<TokenLogprob> promptLogprobs);
        /**
         * Choice {@code choice} ended; {@code usage} and {@code stats} are set when it was the last choice to end (the
         * request is then done), null otherwise.
         */
        void finish(int choice, FinishReason reason, String matchedStop, int completionTokens, int reasoningTokens,
                    Usage usage, RequestStats stats);
        void fail(Status status);
    }

    private final class Run {
        final GenerationSpec spec;
        final String conversation;
        final Sink sink;
        final Context ctx;
        final int choices;                             // sampling.n
        final Answer[] answers;                        // per choice
        final List<List<Integer>> delivered = new ArrayList<>(); // per choice: tokens relayed to the client
        final boolean[] ended;                         // per choice: its last event came
        int open, completionTokens, reasoningTokens;   // choices not ended; counts of the ended ones
        boolean anyEvent, promptLogprobsSent;
        final Set<String> failedTargets = new HashSet<>();
        /** Why the last attempt was lost (for the final error when no decode worker is left); null before any loss. */
        volatile Status lastLoss;
        final Span span;                              // "lightmesh.generate": the request's root in the mesh
        final io.opentelemetry.context.Context trace; // the span's context, parent of all the request causes
        final long admittedNanos = System.nanoTime();
        long firstTokenNanos;
        int attempt;
        long stateBytes;
        boolean waiting;                              // counted in queued

        Run(GenerationSpec spec, String conversation, Answer[] answers, Sink sink) {
            this.spec = spec;
            this.conversation = conversation;
            this.answers = answers;
            this.choices = answers.length;
            this.ended = new boolean[choices];
            this.open = choices;
            for (int c = 0; c < choices; c++) delivered.add(new ArrayList<>());
            this.sink = sink;
            this.ctx = Context.current();
            this.span = tracer.spanBuilder("lightmesh.generate").setSpanKind(SpanKind.SERVER)
                    .setParent(io.opentelemetry.context.Context.current())
                    .setAttribute(REQUEST_ID, spec.getRequestId())
                    .setAttribute("lightmesh.prompt_tokens", spec.getPromptTokensCount()).startSpan();
            this.trace = io.opentelemetry.context.Context.current().with(span);
        }

        void start() { ctx.run(this::launch); }

        private void launch() {
            try (Scope ignored = trace.makeCurrent()) {
                launchAttempt();
            }
        }

        private void launchAttempt() {
            String target = pickDecode(failedTargets);
            if (target == null) {
                done();
                sink.fail(Status.UNAVAILABLE.withDescription("no decode worker reachable" + (lastLoss == null ? "" : "; the last attempt failed: " + lastLoss)));
                return;
            }
            synchronized (this) {
                if (!waiting) { waiting = true; queued.incrementAndGet(); }
            }
            GenerationSpec attemptSpec;
            synchronized (this) { attemptSpec = spec.toBuilder().addAllGeneratedTokens(delivered.getFirst()).build(); }
            int context = attemptSpec.getPromptTokensCount() + attemptSpec.getGeneratedTokensCount();
            int myAttempt = attempt;
            DecodeGrpc.newStub(channel(target)).generate(DecodeRequest.newBuilder().setRequestId(spec.getRequestId()).build(), new StreamObserver<>() {
                @Override public void onNext(DecodeEvent e) { onEvent(myAttempt, e); }
                @Override public void onError(Throwable t) { onDecodeError(target, myAttempt, Status.fromThrowable(t)); }
                @Override public void onCompleted() {}
            });
            PrefillTask task = PrefillTask.newBuilder().setSpec(attemptSpec).setConversationId(conversation).setDecodeTarget(target)
                    .setAttempt(attempt).setExpectedStateBytes(StateCodec.serialisedBytes(model.config(), context) * choices).build(); // a copy per choice
            Span publish = tracer.spanBuilder("lightmesh.queue publish").setSpanKind(SpanKind.PRODUCER)
                    .setAttribute("messaging.system", "kafka").setAttribute("messaging.destination.name", settings.topic())
                    .setAttribute("lightmesh.attempt", attempt).startSpan();
            ProducerRecord<String, byte[]> record = new ProducerRecord<>(settings.topic(), conversation, task.toByteArray());
            MeshTelemetry.inject(trace.with(publish), record.headers()); // the prefill worker continues this trace
            producer.send(record, (meta, err) -> {
                if (err != null) publish.setStatus(StatusCode.ERROR, String.valueOf(err));
                publish.end();
                if (err != null) { done(); sink.fail(Status.UNAVAILABLE.withDescription("cannot queue request on Kafka: " + err)); }
            });
        }

        /**
         * One decode event: its token (at most one; none for the step that met eos) and the text it released. Events
         * of an earlier attempt, and tokens already delivered, are dropped: text belongs to its token, so a resumed
         * worker (which replays the delivered tokens) continues the text exactly where the lost one stopped.
         */
        private void onEvent(int fromAttempt, DecodeEvent e) {
            int c = e.getChoiceIndex();
            List<Integer> fresh = new ArrayList<>();
            List<TokenLogprob> freshLogprobs = new ArrayList<>(), promptLogprobs = List.of();
            Answer.Delta delta;
            boolean choiceEnded, last = false;
            FinishReason reason = null;
            int choiceTokens = 0;
            synchronized (this) {
                if (fromAttempt != attempt || finished || c < 0 || c >= choices || ended[c]) return;
                List<Integer> mine = delivered.get(c);
                if (e.getFirstIndex() + e.getTokenIdsCount() <= mine.size() && e.getTokenIdsCount() > 0) return;
                anyEvent = true;
                for (int i = 0; i < e.getTokenIdsCount(); i++) {
                    if (e.getFirstIndex() + i == mine.size()) {
                        mine.add(e.getTokenIds(i));
                        fresh.add(e.getTokenIds(i));
                        if (i < e.getLogprobsCount()) freshLogprobs.add(logprobText.describe(e.getLogprobs(i)));
                    }
                }
                if (!promptLogprobsSent && e.getPromptLogprobsCount() > 0) {
                    promptLogprobsSent = true;
                    promptLogprobs = e.getPromptLogprobsList().stream().map(logprobText::describe).toList();
                }
                choiceEnded = e.getFinishReason() != FinishReason.FINISH_REASON_UNSPECIFIED;
                delta = answers[c].accept(e.getTextDelta(), choiceEnded);
                if (choiceEnded) {
                    ended[c] = true;
                    reason = answers[c].finishReason(e.getFinishReason());
                    choiceTokens = mine.size();
                    completionTokens += choiceTokens;
                    reasoningTokens += e.getReasoningTokens();
                    last = --open == 0;
                    if (last) stateBytes += e.getStats().getStateBytes();
                }
                if (waiting) { waiting = false; queued.decrementAndGet(); }
                if (!fresh.isEmpty() && firstTokenNanos == 0) {
                    firstTokenNanos = System.nanoTime();
                    ttft.record((firstTokenNanos - admittedNanos) / 1e9);
                    span.addEvent("first token");
                }
            }
            if (!fresh.isEmpty() || !delta.isEmpty() || !promptLogprobs.isEmpty()) sink.delta(c, fresh, delta, freshLogprobs, promptLogprobs);
            if (!choiceEnded) return;
            if (!last) {
                sink.finish(c, reason, e.getMatchedStop(), choiceTokens, e.getReasoningTokens(), null, null);
                return;
            }
            int completion = completionTokens;
            if (completion > choices) tpot.record((System.nanoTime() - firstTokenNanos) / 1e9 / ((completion - 1.0) / choices));
            span.setAttribute("lightmesh.completion_tokens", completion).setAttribute("lightmesh.finish_reason", e.getFinishReason().name())
                    .setAttribute("lightmesh.resumes", attempt);
            done();
            sink.finish(c, reason, e.getMatchedStop(), choiceTokens, e.getReasoningTokens(),
                    Usage.newBuilder().setPromptTokens(spec.getPromptTokensCount()).setCompletionTokens(completion)
                            .setReasoningTokens(reasoningTokens).setTotalTokens(spec.getPromptTokensCount() + completion)
                            .setCachedTokens(Math.min(spec.getPromptTokensCount(), e.getStats().getCachedTokens())).build(),
                    e.getStats().toBuilder().setResumes(attempt).setStateBytes(stateBytes).build());
        }

        private void onDecodeError(String target, int failedAttempt, Status s) {
            if (ctx.isCancelled()) { // the client went away or its deadline passed
                span.setAttribute("lightmesh.finish_reason", "client cancelled or deadline passed");
                done();
                return;
            }
            // the client still wants the answer: anything but its own deadline means the worker (or its link) was lost;
            // a killed server resets its streams, which reads as CANCELLED here
            boolean lost = switch (s.getCode()) {
                case UNAVAILABLE, INTERNAL, NOT_FOUND, CANCELLED, UNKNOWN, ABORTED -> true;
                default -> false;
            };
            synchronized (this) {
                if (failedAttempt != attempt || finished) return;
                if (lost) lastLoss = s;
                // several choices resume only before any event: their tokens differ, one re-prefill cannot hold them
                if (lost && attempt < settings.maxResumes() && (choices == 1 || !anyEvent)) {
                    attempt++;
                    failedTargets.add(target);
                    LOG.info("decode worker " + target + " lost request " + spec.getRequestId() + " (" + s + "); resuming after "
                            + delivered.getFirst().size() + " tokens, attempt " + attempt);
                    span.addEvent("decode worker lost; resuming on another");
                } else {
                    lost = false;
                }
            }
            if (lost) { ctx.run(this::launch); return; }
            span.setStatus(StatusCode.ERROR, s.toString());
            done();
            sink.fail(s.getCode() == Status.Code.UNAVAILABLE
                    ? Status.UNAVAILABLE.withDescription((choices > 1 && anyEvent ? "decode worker lost after the first tokens of a request with "
                            + choices + " choices (not resumed): " : "decode worker lost and no resume left: ") + s.getDescription()) : s);
        }

        private boolean finished;

        private synchronized void done() {
            if (finished) return;
            finished = true;
            inFlight.decrementAndGet();
            if (waiting) { waiting = false; queued.decrementAndGet(); }
            span.end();
        }
    }

    private Run admit(GenerateRequest r, Sink sink) {
        String id = r.getRequestId().isEmpty() ? UUID.randomUUID().toString() : r.getRequestId();
        GenerationSpec spec = validate(r, id);
        long deadline = Context.current().getDeadline() == null ? 0
                : System.currentTimeMillis() + Context.current().getDeadline().timeRemaining(TimeUnit.MILLISECONDS);
        spec = spec.toBuilder().setDeadlineUnixMs(deadline).build();
        refuseIfNoDecodeWorkerCanHold(spec);
        if (inFlight.incrementAndGet() > settings.maxInFlight()) {
            inFlight.decrementAndGet();
            throw Status.RESOURCE_EXHAUSTED.withDescription("admission queue full (" + settings.maxInFlight() + " requests in flight); retry later")
                    .asRuntimeException(retryAfter());
        }
        int think = prompts.thinkOpenId();
        boolean inReasoning = think >= 0 && spec.getPromptTokens(spec.getPromptTokensCount() - 1) == think;
        Answer[] answers = new Answer[Specs.choices(spec)];
        for (int c = 0; c < answers.length; c++) answers[c] = new Answer(c == 0 ? id : id + "_" + c, r.getParseOutput(), inReasoning);
        return new Run(spec, ConversationKey.of(r, id), answers, sink);
    }

    public int inFlight() { return inFlight.get(); }

    /**
     * A request whose state at its longest (prompt plus max tokens, a copy per choice; what the prefill worker reserves)
     * exceeds the state budget of every decode worker known could never be placed: its record would wait on Kafka for
     * room that never comes. It is refused at once with OUT_OF_RANGE (HTTP 400) naming both sizes. Before the first
     * poll (no budget known) nothing is refused.
     */
    private void refuseIfNoDecodeWorkerCanHold(GenerationSpec spec) {
        long largest = decodeInfo.values().stream().mapToLong(w -> w.getLoad().getStateBytesBudget()).max().orElse(0);
        if (largest <= 0) return;
        long need = StateCodec.serialisedBytes(model.config(), spec.getPromptTokensCount() + (long) spec.getSampling().getMaxNewTokens())
                * Specs.choices(spec);
        if (need > largest) {
            throw Status.OUT_OF_RANGE.withDescription("the request needs " + need + " bytes of decode state (prompt of " + spec.getPromptTokensCount()
                    + " tokens plus max " + spec.getSampling().getMaxNewTokens() + " new, " + Specs.choices(spec)
                    + " choice(s)); the largest decode worker holds " + largest + " bytes (lightmesh.budget-gib): ask for fewer tokens").asRuntimeException();
        }
    }

    /** Trailer {@code retry-after} (seconds) of a refusal for load, as HTTP's Retry-After header says it. */
    public static final io.grpc.Metadata.Key<String> RETRY_AFTER = io.grpc.Metadata.Key.of("retry-after", io.grpc.Metadata.ASCII_STRING_MARSHALLER);

    private static io.grpc.Metadata retryAfter() {
        io.grpc.Metadata m = new io.grpc.Metadata();
        m.put(RETRY_AFTER, "1");
        return m;
    }

    final class InferenceService extends InferenceGrpc.InferenceImplBase {
        @Override
        public void generateStream(GenerateRequest r, StreamObserver<GenerateChunk> out) {
            ServerCallStreamObserver<GenerateChunk> obs = (ServerCallStreamObserver<GenerateChunk>) out;
            obs.setOnCancelHandler(() -> {});
            Run[] run = new Run[1];
            try {
                run[0] = admit(r, new Sink() {
                    boolean started; // the first chunk carries the prompt's token ids

                    private void send(GenerateChunk.Builder c) {
                        if (!started && r.getReturnTokenIds()) c.addAllPromptTokenIds(run[0].spec.getPromptTokensList());
                        started = true;
                        obs.onNext(c.setRequestId(run[0].spec.getRequestId()).build());
                    }

                    @Override public void delta(int choice, List<Integer> ids, Answer.Delta d, List<TokenLogprob> lps, List<TokenLogprob> promptLps) {
                        if (d.isEmpty() && !r.getReturnTokenIds() && lps.isEmpty() && promptLps.isEmpty()) return;
                        synchronized (obs) {
                            if (obs.isCancelled()) return;
                            GenerateChunk.Builder c = GenerateChunk.newBuilder().setChoiceIndex(choice)
                                    .setTextDelta(d.text()).setReasoningDelta(d.reasoning()).addAllToolCalls(d.toolCalls())
                                    .addAllLogprobs(lps).addAllPromptLogprobs(promptLps);
                            if (r.getReturnTokenIds()) c.addAllTokenIds(ids);
                            send(c);
                        }
                    }
                    @Override public void finish(int choice, FinishReason reason, String matchedStop, int completionTokens, int reasoningTokens,
                                                 Usage usage, RequestStats stats) {
                        synchronized (obs) {
                            if (obs.isCancelled()) return;
                            GenerateChunk.Builder c = GenerateChunk.newBuilder().setChoiceIndex(choice).setFinishReason(reason).setMatchedStop(matchedStop);
                            if (usage != null) c.setUsage(usage).setStats(stats);
                            send(c);
                            if (usage != null) obs.onCompleted();
                        }
                    }
                    @Override public void fail(Status s) {
                        synchronized (obs) { if (!obs.isCancelled()) obs.onError(s.asRuntimeException()); }
                    }
                });
            } catch (StatusRuntimeException e) {
                out.onError(e);
                return;
            }
            run[0].start();
        }

        @Override
        public void generate(GenerateRequest r, StreamObserver<GenerateResponse> out) {
            GenerateResponse.Builder resp = GenerateResponse.newBuilder();
            Run[] run = new Run[1];
            try {
                run[0] = admit(r, new Sink() {
                    final Choice.Builder[] choices = new Choice.Builder[Math.max(1, r.getSampling().getN())];
                    { for (int c = 0; c < choices.length; c++) choices[c] = Choice.newBuilder().setIndex(c); }

                    @Override public synchronized void delta(int choice, List<Integer> ids, Answer.Delta d, List<TokenLogprob> lps, List<TokenLogprob> promptLps) {
                        if (r.getReturnTokenIds()) choices[choice].addAllTokenIds(ids);
                        choices[choice].addAllLogprobs(lps);
                        resp.addAllPromptLogprobs(promptLps);
                    }
                    @Override public synchronized void finish(int choice, FinishReason reason, String matchedStop, int completionTokens,
                                                              int reasoningTokens, Usage usage, RequestStats stats) {
                        Answer a = run[0].answers[choice];
                        Choice.Builder c = choices[choice].setText(a.text()).setReasoning(a.reasoning()).setFinishReason(reason)
                                .setMatchedStop(matchedStop).setCompletionTokens(completionTokens).setReasoningTokens(reasoningTokens);
                        if (r.getParseOutput()) c.addAllToolCalls(a.toolCalls());
                        if (usage == null) return;
                        Choice first = choices[0].build();
                        resp.setText(first.getText()).setReasoning(first.getReasoning()).addAllToolCalls(first.getToolCallsList())
                                .addAllTokenIds(first.getTokenIdsList()).addAllLogprobs(first.getLogprobsList())
                                .setFinishReason(first.getFinishReason()).setMatchedStop(first.getMatchedStop());
                        if (r.getReturnTokenIds()) resp.addAllPromptTokenIds(run[0].spec.getPromptTokensList());
                        if (choices.length > 1) for (Choice.Builder b : choices) resp.addChoices(b);
                        out.onNext(resp.setUsage(usage).setStats(stats).build());
                        out.onCompleted();
                    }
                    @Override public void fail(Status s) { out.onError(s.asRuntimeException()); }
                });
            } catch (StatusRuntimeException e) {
                out.onError(e);
                return;
            }
            resp.setRequestId(run[0].spec.getRequestId());
            run[0].start();
        }

        @Override
        public void tokenize(TokenizeRequest r, StreamObserver<TokenizeResponse> out) {
            try {
                out.onNext(validator.tokenize(r));
                out.onCompleted();
            } catch (StatusRuntimeException e) {
                out.onError(e);
            }
        }

        @Override
        public void getModelInfo(ModelInfoRequest r, StreamObserver<ModelInfo> out) {
            out.onNext(modelInfo());
            out.onCompleted();
        }

        @Override
        public void health(HealthRequest r, StreamObserver<HealthResponse> out) {
            out.onNext(RouterCore.this.health());
            out.onCompleted();
        }
    }

    private String modelId() { return model.dir().getFileName().toString(); }

    public ModelInfo modelInfo() {
        ModelConfig c = model.config();
        ModelInfo.Builder b = ModelInfo.newBuilder().setModelId(modelId()).setModelType(c.modelType())
                .setVocabSize(c.vocabSize()).setHiddenSize(c.hiddenSize()).setNumLayers(c.numLayers()).setNumHeads(c.numHeads())
                .setNumKvHeads(c.numKvHeads()).setHeadDim(c.headDim()).setNumExperts(c.numExperts()).setTopK(c.topK())
                .setMaxPositions(c.maxPositions()).setParameterCount(c.parameterCount()).setActiveParameterCount(c.activeParameterCount())
                .setEosTokenId(model.eosId()).setDefaultMaxNewTokens(settings.defaultMaxNewTokens()).setMaxPromptTokens(settings.maxPromptTokens())
                .setFixedStateBytes(StateCodec.serialisedBytes(c, 0)).setStateBytesPerToken(StateCodec.bytesPerToken(c)).setServingMode("mesh");
        for (int l = 0; l < c.numLayers(); l++) b.addLayerKinds(c.isSoftmax(l) ? LayerKind.LAYER_KIND_SOFTMAX : LayerKind.LAYER_KIND_LIGHTNING);
        return b.build();
    }

    @Override
    public void close() {
        gauges.forEach(ObservableLongGauge::close);
        poller.shutdownNow();
        producer.close(java.time.Duration.ofSeconds(2));
        admin.close(java.time.Duration.ofSeconds(2));
        for (ManagedChannel ch : channels.values()) Grpc.shutdown(ch);
    }
}
