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
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.StateCodec;
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
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.ServingStatus;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.TokenizeResponse;
import io.lightmesh.proto.v1.Usage;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
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
    private final MeshModel model;
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
    private final ScheduledExecutorService poller = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "router-poller");
        t.setDaemon(true);
        return t;
    });

    public RouterCore(Settings settings, MeshModel model) {
        this.settings = settings;
        this.model = model;
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, settings.bootstrapServers());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        producer = new KafkaProducer<>(p);
        Properties a = new Properties();
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

    private ManagedChannel channel(String target) { return channels.computeIfAbsent(target, Grpc::channel); }

    // ---- discovery and health ----

    private void poll() {
        for (String t : settings.decodeTargets()) describe(t, decodeInfo, decodeErrors);
        for (String t : settings.expertTargets()) describe(t, expertInfo, expertErrors);
        try {
            admin.describeCluster().nodes().get(5, TimeUnit.SECONDS);
            kafkaError = null;
        } catch (Exception e) {
            kafkaError = String.valueOf(e.getCause() != null ? e.getCause() : e);
        }
        try {
            ConsumerGroupDescription g = admin.describeConsumerGroups(List.of(settings.prefillGroup()))
                    .describedGroups().get(settings.prefillGroup()).get(10, TimeUnit.SECONDS);
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
                errors.put(target, "runs model " + w.getModelFingerprint() + ", router has " + model.fingerprint());
                return;
            }
            info.put(target, w);
            errors.remove(target);
        } catch (StatusRuntimeException e) {
            info.remove(target);
            errors.put(target, e.getStatus().toString());
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
        for (String t : settings.decodeTargets()) {
            WorkerInfo w = decodeInfo.get(t);
            anyDecode |= w != null;
            parts.add(ComponentHealth.newBuilder().setName("decode/" + (w != null ? w.getWorkerId() : t)).setAddress(t).setReachable(w != null)
                    .setDetail(w != null ? w.getLoad().getActiveSequences() + " sequences, " + w.getLoad().getStateBytesUsed() + " of "
                            + w.getLoad().getStateBytesBudget() + " state bytes" : decodeErrors.getOrDefault(t, "not checked yet")).build());
        }
        ok &= anyDecode;
        if (!settings.expertTargets().isEmpty()) {
            List<ExpertPlacement.Shard> shards = new ArrayList<>();
            for (String t : settings.expertTargets()) {
                WorkerInfo w = expertInfo.get(t);
                if (w != null) {
                    shards.add(new ExpertPlacement.Shard(w.getWorkerId(), t, w.getExperts().getLayersList().stream().mapToInt(Integer::intValue).toArray(),
                            w.getExperts().getExpertsList().stream().mapToInt(Integer::intValue).toArray()));
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
        for (String t : settings.decodeTargets()) {
            WorkerInfo w = decodeInfo.get(t);
            if (w == null || avoid.contains(t)) continue;
            double free = w.getLoad().getStateBytesBudget() - w.getLoad().getStateBytesUsed();
            double score = free / (1 + w.getLoad().getActiveSequences() + w.getLoad().getPendingSequences());
            if (score > bestScore) { bestScore = score; best = t; }
        }
        if (best == null) for (String t : settings.decodeTargets()) if (!avoid.contains(t)) return t; // not polled yet
        return best;
    }

    // ---- validation ----

    /** The resolved spec, or INVALID_ARGUMENT naming the field. */
    GenerationSpec validate(GenerateRequest r, String id) {
        ModelConfig c = model.config();
        List<Integer> prompt;
        switch (r.getInputCase()) {
            case TOKEN_IDS -> prompt = r.getTokenIds().getIdsList();
            case PROMPT, CHAT -> throw Status.UNIMPLEMENTED.withDescription(
                    "text and chat input need the engine tokenizer, not wired into the router yet: send token_ids").asRuntimeException();
            default -> throw invalid("input: one of prompt, token_ids, chat must be set");
        }
        if (prompt.isEmpty()) throw invalid("token_ids.ids: at least one token");
        if (prompt.size() > settings.maxPromptTokens()) throw invalid("prompt has " + prompt.size() + " tokens; this server admits " + settings.maxPromptTokens());
        for (int t : prompt) if (t < 0 || t >= c.vocabSize()) throw invalid("token_ids.ids: " + t + " outside the vocabulary 0.." + (c.vocabSize() - 1));
        SamplingParams s = r.getSampling();
        if (s.hasTemperature() && !(s.getTemperature() >= 0 && s.getTemperature() <= 100)) throw invalid("sampling.temperature must be in [0, 100]");
        if (s.getTopK() < 0) throw invalid("sampling.top_k must be >= 0");
        if (s.hasTopP() && !(s.getTopP() > 0 && s.getTopP() <= 1)) throw invalid("sampling.top_p must be in (0, 1]");
        if (s.hasMaxNewTokens() && s.getMaxNewTokens() < 1) throw invalid("sampling.max_new_tokens must be >= 1");
        if (s.getMaxThinkingTokens() < 0) throw invalid("sampling.max_thinking_tokens must be >= 0");
        SamplingParams.Builder resolved = s.toBuilder();
        if (!s.hasMaxNewTokens()) resolved.setMaxNewTokens(settings.defaultMaxNewTokens());
        if (!s.hasSeed()) resolved.setSeed(java.util.concurrent.ThreadLocalRandom.current().nextLong());
        if ((long) prompt.size() + resolved.getMaxNewTokens() > c.maxPositions()) throw invalid("prompt + max_new_tokens exceeds max positions " + c.maxPositions());
        return GenerationSpec.newBuilder().setRequestId(id).addAllPromptTokens(prompt).setSampling(resolved)
                .setAdmittedUnixUs(System.currentTimeMillis() * 1000).build();
    }

    private static StatusRuntimeException invalid(String m) { return Status.INVALID_ARGUMENT.withDescription(m).asRuntimeException(); }

    // ---- one request through the mesh ----

    /** Where a request's output goes: the streaming or the unary handler. */
    private interface Sink {
        void tokens(List<Integer> ids);
        void finish(FinishReason reason, Usage usage, RequestStats stats);
        void fail(Status status);
    }

    private final class Run {
        final GenerationSpec spec;
        final String conversation;
        final Sink sink;
        final Context ctx;
        final List<Integer> delivered = new ArrayList<>();
        final Set<String> failedTargets = new HashSet<>();
        int attempt;
        long stateBytes;

        Run(GenerationSpec spec, String conversation, Sink sink) {
            this.spec = spec;
            this.conversation = conversation;
            this.sink = sink;
            this.ctx = Context.current();
        }

        void start() { ctx.run(this::launch); }

        private void launch() {
            String target = pickDecode(failedTargets);
            if (target == null) { done(); sink.fail(Status.UNAVAILABLE.withDescription("no decode worker reachable")); return; }
            GenerationSpec attemptSpec;
            synchronized (this) { attemptSpec = spec.toBuilder().addAllGeneratedTokens(delivered).build(); }
            int context = attemptSpec.getPromptTokensCount() + attemptSpec.getGeneratedTokensCount();
            int myAttempt = attempt;
            DecodeGrpc.newStub(channel(target)).generate(DecodeRequest.newBuilder().setRequestId(spec.getRequestId()).build(), new StreamObserver<>() {
                @Override public void onNext(DecodeEvent e) { onEvent(e); }
                @Override public void onError(Throwable t) { onDecodeError(target, myAttempt, Status.fromThrowable(t)); }
                @Override public void onCompleted() {}
            });
            PrefillTask task = PrefillTask.newBuilder().setSpec(attemptSpec).setConversationId(conversation).setDecodeTarget(target)
                    .setAttempt(attempt).setExpectedStateBytes(StateCodec.serialisedBytes(model.config(), context)).build();
            producer.send(new ProducerRecord<>(settings.topic(), conversation, task.toByteArray()), (meta, err) -> {
                if (err != null) { done(); sink.fail(Status.UNAVAILABLE.withDescription("cannot queue request on Kafka: " + err)); }
            });
        }

        private void onEvent(DecodeEvent e) {
            List<Integer> fresh = new ArrayList<>();
            boolean last;
            synchronized (this) {
                for (int i = 0; i < e.getTokenIdsCount(); i++) {
                    if (e.getFirstIndex() + i == delivered.size()) {
                        delivered.add(e.getTokenIds(i));
                        fresh.add(e.getTokenIds(i));
                    }
                }
                last = e.getFinishReason() != FinishReason.FINISH_REASON_UNSPECIFIED;
                if (last) stateBytes += e.getStats().getStateBytes();
            }
            if (!fresh.isEmpty()) sink.tokens(fresh);
            if (last) {
                done();
                int completion = delivered.size();
                sink.finish(e.getFinishReason(), Usage.newBuilder().setPromptTokens(spec.getPromptTokensCount()).setCompletionTokens(completion)
                                .setTotalTokens(spec.getPromptTokensCount() + completion).build(),
                        e.getStats().toBuilder().setResumes(attempt).setStateBytes(stateBytes).build());
            }
        }

        private void onDecodeError(String target, int failedAttempt, Status s) {
            if (ctx.isCancelled()) { done(); return; } // the client went away or its deadline passed
            // the client still wants the answer: anything but its own deadline means the worker (or its link) was lost;
            // a killed server resets its streams, which reads as CANCELLED here
            boolean lost = switch (s.getCode()) {
                case UNAVAILABLE, INTERNAL, NOT_FOUND, CANCELLED, UNKNOWN, ABORTED -> true;
                default -> false;
            };
            synchronized (this) {
                if (failedAttempt != attempt) return;
                if (lost && attempt < settings.maxResumes()) {
                    attempt++;
                    failedTargets.add(target);
                    LOG.info("decode worker " + target + " lost request " + spec.getRequestId() + " (" + s + "); resuming after "
                            + delivered.size() + " tokens, attempt " + attempt);
                } else {
                    lost = false;
                }
            }
            if (lost) { ctx.run(this::launch); return; }
            done();
            sink.fail(s.getCode() == Status.Code.UNAVAILABLE
                    ? Status.UNAVAILABLE.withDescription("decode worker lost and no resume left: " + s.getDescription()) : s);
        }

        private boolean finished;

        private synchronized void done() {
            if (!finished) { finished = true; inFlight.decrementAndGet(); }
        }
    }

    private Run admit(GenerateRequest r, Sink sink) {
        String id = r.getRequestId().isEmpty() ? UUID.randomUUID().toString() : r.getRequestId();
        GenerationSpec spec = validate(r, id);
        long deadline = Context.current().getDeadline() == null ? 0
                : System.currentTimeMillis() + Context.current().getDeadline().timeRemaining(TimeUnit.MILLISECONDS);
        spec = spec.toBuilder().setDeadlineUnixMs(deadline).build();
        if (inFlight.incrementAndGet() > settings.maxInFlight()) {
            inFlight.decrementAndGet();
            throw Status.RESOURCE_EXHAUSTED.withDescription("admission queue full (" + settings.maxInFlight() + " requests in flight); retry later").asRuntimeException();
        }
        return new Run(spec, r.getConversationId().isEmpty() ? id : r.getConversationId(), sink);
    }

    public int inFlight() { return inFlight.get(); }

    final class InferenceService extends InferenceGrpc.InferenceImplBase {
        @Override
        public void generateStream(GenerateRequest r, StreamObserver<GenerateChunk> out) {
            ServerCallStreamObserver<GenerateChunk> obs = (ServerCallStreamObserver<GenerateChunk>) out;
            obs.setOnCancelHandler(() -> {});
            Run[] run = new Run[1];
            try {
                run[0] = admit(r, new Sink() {
                    @Override public void tokens(List<Integer> ids) {
                        synchronized (obs) {
                            if (obs.isCancelled()) return;
                            GenerateChunk.Builder c = GenerateChunk.newBuilder().setRequestId(run[0].spec.getRequestId());
                            if (r.getReturnTokenIds()) c.addAllTokenIds(ids);
                            obs.onNext(c.build());
                        }
                    }
                    @Override public void finish(FinishReason reason, Usage usage, RequestStats stats) {
                        synchronized (obs) {
                            if (obs.isCancelled()) return;
                            obs.onNext(GenerateChunk.newBuilder().setRequestId(run[0].spec.getRequestId()).setFinishReason(reason).setUsage(usage).setStats(stats).build());
                            obs.onCompleted();
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
            Run run;
            try {
                run = admit(r, new Sink() {
                    @Override public synchronized void tokens(List<Integer> ids) { if (r.getReturnTokenIds()) resp.addAllTokenIds(ids); }
                    @Override public synchronized void finish(FinishReason reason, Usage usage, RequestStats stats) {
                        out.onNext(resp.setFinishReason(reason).setUsage(usage).setStats(stats).build());
                        out.onCompleted();
                    }
                    @Override public void fail(Status s) { out.onError(s.asRuntimeException()); }
                });
            } catch (StatusRuntimeException e) {
                out.onError(e);
                return;
            }
            resp.setRequestId(run.spec.getRequestId());
            run.start();
        }

        @Override
        public void tokenize(TokenizeRequest r, StreamObserver<TokenizeResponse> out) {
            out.onError(Status.UNIMPLEMENTED.withDescription("tokenize needs the engine tokenizer, not wired into the router yet").asRuntimeException());
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

    public ModelInfo modelInfo() {
        ModelConfig c = model.config();
        ModelInfo.Builder b = ModelInfo.newBuilder().setModelId(model.dir().getFileName().toString()).setModelType(c.modelType())
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
        poller.shutdownNow();
        producer.close(java.time.Duration.ofSeconds(2));
        admin.close(java.time.Duration.ofSeconds(2));
        for (ManagedChannel ch : channels.values()) Grpc.shutdown(ch);
    }
}
