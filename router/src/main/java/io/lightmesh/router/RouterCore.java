package io.lightmesh.router;

import io.grpc.BindableService;
import io.grpc.Metadata;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.HealthResponse;
import io.lightmesh.proto.v1.LayerKind;
import io.lightmesh.proto.v1.ModelInfo;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.trace.Tracer;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * The router: serves the public Inference API. Validates and admits requests (bounded; RESOURCE_EXHAUSTED when
 * full), picks a decode worker, follows its token stream, queues the request on Kafka for prefill (keyed by
 * conversation), relays tokens to the client, and resumes on another decode worker when one is lost (prompt plus
 * the tokens delivered so far are prefilled again). Client cancellation and deadlines propagate through the gRPC
 * context to the decode worker, which frees the sequence.
 *
 * <p>This class wires the parts: the {@link WorkerDirectory} (discovery, health, the choice of decode worker), the
 * {@link RequestQueue} (the Kafka topic), {@link Admission}, one {@link RequestRun} per request, the gRPC service
 * {@link InferenceImpl}, and the {@link RouterMetrics}.
 */
public final class RouterCore implements AutoCloseable {
    /** Settings (config keys lightmesh.router.*). */
    public record Settings(String bootstrapServers, String topic, int partitions, String prefillGroup,
                           List<String> decodeTargets, List<String> expertTargets, int maxInFlight,
                           int defaultMaxNewTokens, int maxPromptTokens, int maxResumes, long pollMs) {}

    private final Settings settings;
    private final MeshModel model;
    private final RequestValidator validator;
    private final Admin admin;
    private final WorkerDirectory workers;
    private final RequestQueue queue;
    private final RouterMetrics metrics;
    private final List<BindableService> services;
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
        this.model = model;
        Tracer tracer = otel.getTracer(MeshTelemetry.SCOPE);
        this.metrics = new RouterMetrics(otel);
        Prompts prompts = new Prompts(model.tokenizer(), model.dir().getFileName().toString());
        this.validator = new RequestValidator(model.config(), model.tokenizer(), modelId(), settings.maxPromptTokens(),
                settings.defaultMaxNewTokens(), limits);
        this.queue = new RequestQueue(settings.bootstrapServers(), settings.topic(), tracer);
        Properties a = io.lightmesh.mesh.KafkaBackoff.admin(new Properties());
        a.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, settings.bootstrapServers());
        admin = Admin.create(a);
        ensureTopic(admin, settings.topic(), settings.partitions());
        this.workers = new WorkerDirectory(settings, decodeTargets, expertTargets, model, admin);
        RequestRun.Mesh mesh = new RequestRun.Mesh(workers, queue, metrics, new LogprobText(model.tokenizer()), model.config(), tracer,
                settings.maxResumes());
        this.services = List.of(new InferenceImpl(new Admission(validator, prompts, settings.maxInFlight(), mesh), validator,
                this::modelInfo, this::health));
        poller.scheduleWithFixedDelay(workers::poll, 0, settings.pollMs(), TimeUnit.MILLISECONDS);
    }

    /** Creates the request topic when missing (replication 1 on a one-broker cluster, else 3 at most). */
    public static void ensureTopic(Admin admin, String topic, int partitions) { RequestQueue.ensureTopic(admin, topic, partitions); }

    /** Inference. */
    public List<BindableService> services() { return services; }

    /** Refreshes discovery now (tests, and the launcher before it reports readiness). */
    public void refresh() { workers.poll(); }

    public HealthResponse health() { return workers.health(); }

    /** The resolved spec (template applied, defaults filled in), or INVALID_ARGUMENT naming the field or limit. */
    GenerationSpec validate(GenerateRequest r, String id) { return validator.validate(r, id); }

    /** Requests admitted and not finished. */
    public int inFlight() { return metrics.inFlight.get(); }

    /** Trailer {@code retry-after} (seconds) of a refusal for load, as HTTP's Retry-After header says it. */
    public static final Metadata.Key<String> RETRY_AFTER = Admission.RETRY_AFTER;

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
        metrics.close();
        poller.shutdownNow();
        queue.close();
        admin.close(Duration.ofSeconds(2));
        workers.close();
    }
}
