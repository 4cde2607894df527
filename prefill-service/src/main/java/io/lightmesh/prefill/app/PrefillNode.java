package io.lightmesh.prefill.app;

import io.lightmesh.engine.prefix.PrefixCache;
import io.lightmesh.mesh.MeshMetrics;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.PlacementSource;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.mesh.Services;
import io.lightmesh.prefill.PrefillWorker;
import io.opentelemetry.api.OpenTelemetry;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.event.Observes;
import jakarta.inject.Singleton;
import org.jboss.logging.Logger;

import java.util.ArrayList;
import java.util.List;

/**
 * The prefill worker of this process: a member of the request topic's consumer group, started with the application
 * (after the experts are placed) and closed on SIGTERM: it leaves the group without committing what it had not
 * handed off, so another member takes that record.
 */
@Startup
@Singleton
public class PrefillNode {
    private static final Logger LOG = Logger.getLogger(PrefillNode.class);

    private final MeshModel model;
    private final List<RemoteExperts> remotes = new ArrayList<>();
    private final PrefillWorker worker;
    private final String id;

    PrefillNode(PrefillConfig config, OpenTelemetry tracing, MeshMetrics metrics) throws Exception {
        // Quarkus's SDK traces; the metrics are always recorded, for /q/metrics
        OpenTelemetry otel = metrics.withTracing(tracing);
        // with remote experts the model's in-process ones are not put on a device up front
        model = MeshModel.load(config.model(), Services.backend(config.backend()), config.experts().isEmpty() && config.placement().isEmpty());
        try {
            List<String> experts = config.experts().orElse(List.of());
            id = config.id().orElse("prefill-" + ProcessHandle.current().pid());
            // the controller's placement, or the shards' own: fixed host:port, or dns:name:port followed as shards come and go
            PlacementSource placement = Services.placementSource(model, config.placement(), experts, id, 120_000);
            var forward = Services.workerModel(model, placement, otel, remotes::add, io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_PREFILL);
            worker = new PrefillWorker(new PrefillWorker.Settings(id, config.kafka(), config.topic(), config.prefillGroup(),
                    config.chunkBytes(), 30_000, 50, config.prefillBatchTokens(), config.prefillBatchMax(),
                    config.prefixCacheGib().map(g -> (long) (g * (1L << 30))).orElse(PrefixCache.defaultBytes())), model, forward, otel);
            LOG.infof("prefill worker %s: Kafka %s, topic %s, experts %s, prefix cache %s", id, config.kafka(), config.topic(),
                    placement == null ? "in-process" : config.placement().map(c -> "placed by the controller at " + c).orElse("on " + experts),
                    worker.prefixCache() == null ? "off" : String.format("%.2f GiB", worker.prefixCache().stats().budget() / (double) (1L << 30)));
        } catch (Exception | Error e) {
            remotes.forEach(RemoteExperts::close);
            model.close();
            throw e;
        }
    }

    public PrefillWorker worker() { return worker; }

    String id() { return id; }

    void stop(@Observes ShutdownEvent e) {
        LOG.info("prefill worker: stopping");
        worker.close();
    }

    /** Last, when Quarkus destroys its beans: the expert channels, then the model's mapping. */
    @PreDestroy
    void release() {
        remotes.forEach(RemoteExperts::close);
        model.close();
    }
}
