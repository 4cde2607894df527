package io.lightmesh.router.app;

import io.grpc.ServerInterceptors;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshMetrics;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.OffloadingInterceptor;
import io.lightmesh.mesh.PeerSet;
import io.lightmesh.router.RequestLimits;
import io.lightmesh.router.RouterCore;
import io.lightmesh.router.placement.PlacementController;
import io.opentelemetry.api.OpenTelemetry;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.event.Observes;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Singleton;
import org.jboss.logging.Logger;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Supplier;

/**
 * The router of this process: the model's tokenizer and shape (never its forward pass: the reference backend, which
 * maps the weights without computing), one {@link RouterCore}, its OpenTelemetry from quarkus-opentelemetry. Built
 * at start-up, so that a bad model directory or an unreachable Kafka fails the start; closed on SIGTERM before the
 * gRPC server stops, so in-flight requests end with a status rather than a reset. Built on the main thread at
 * start-up, after Quarkus's gRPC server started: until then the API answers UNAVAILABLE ({@link DeferredServices})
 * and readiness is DOWN.
 */
@Startup
@Singleton
public class RouterNode {
    private static final Logger LOG = Logger.getLogger(RouterNode.class);

    private final MeshModel model;
    /** Decode workers and expert shards: fixed host:port entries or dns:name:port, followed as pods come and go. */
    private final PeerSet decode, experts;
    private final RouterCore core;
    private final PlacementController placement;
    /** Handlers of the public API run here, off Quarkus's gRPC event loop (see OffloadingInterceptor). */
    private final ExecutorService handlers = Executors.newVirtualThreadPerTaskExecutor();

    /** Where the gRPC service bean finds the router's API once it is built. */
    @Produces
    @Singleton
    static DeferredServices services() { return new DeferredServices(); }

    RouterNode(RouterConfig config, OpenTelemetry tracing, DeferredServices services, MeshMetrics metrics) {
        // Quarkus's SDK traces; the metrics are always recorded, for /q/metrics
        OpenTelemetry otel = metrics.withTracing(tracing);
        try {
            this.model = MeshModel.load(config.model(), new ReferenceOps());
        } catch (IOException e) {
            throw new UncheckedIOException("router: cannot load the model at " + config.model() + ": " + e.getMessage(), e);
        }
        this.decode = PeerSet.of(config.decode());
        this.experts = PeerSet.of(config.experts().orElse(List.of()));
        try {
            this.core = new RouterCore(new RouterCore.Settings(config.kafka(), config.topic(), config.partitions(), config.prefillGroup(),
                    config.decode(), config.experts().orElse(List.of()), config.maxInFlight(), config.defaultMaxNewTokens(),
                    config.maxPromptTokens(), config.maxResumes(), config.pollMs()), decode, experts, model, otel,
                    new RequestLimits(config.maxNewTokens(), config.maxMessages(), config.maxTools(), config.maxStopStrings(),
                            config.maxStopChars(), RequestLimits.DEFAULT_MAX_ID_CHARS));
        } catch (RuntimeException e) {
            decode.close();
            experts.close();
            model.close();
            throw e;
        }
        services.publish(ServerInterceptors.intercept(Grpc.traced(core.services().getFirst()), new OffloadingInterceptor(handlers)));
        this.placement = PlacementNode.start(config, experts, model, otel);
        if (placement != null) services.publish(Grpc.traced(placement.service()));
        else services.decline(io.lightmesh.proto.v1.PlacementGrpc.SERVICE_NAME, io.grpc.Status.FAILED_PRECONDITION.withDescription(
                PlacementNode.NO_CONTROLLER + (config.experts().orElse(List.of()).isEmpty() ? "it is given no expert shards (lightmesh.experts)"
                        : "lightmesh.placement-controller is false") + "; a worker's lightmesh.placement must name the router that runs it"));
        services.markReady();
        LOG.infof("router: model %s, Kafka %s, decode %s, experts %s", config.model(), config.kafka(), decode.describe(),
                experts.describe());
    }

    public RouterCore core() { return core; }

    /** The expert shards now (the placement controller's shard set: a live list when discovery is on). */
    public Supplier<List<String>> expertShards() { return experts; }

    /** The expert placement controller; null without expert shards. */
    public PlacementController placement() { return placement; }

    void stop(@Observes ShutdownEvent e) {
        LOG.info("router: stopping");
        if (placement != null) placement.close();
        core.close();
        decode.close();
        experts.close();
    }

    /** Last, when Quarkus destroys its beans. */
    @PreDestroy
    void release() {
        handlers.shutdown();
        model.close();
    }
}
