package io.lightmesh.prefill.app;

import io.lightmesh.mesh.MeshMetrics;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.LiveExperts;
import io.lightmesh.mesh.PeerSet;
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
    private final List<LiveExperts> remotes = new ArrayList<>();
    private final PrefillWorker worker;
    private final String id;

    PrefillNode(PrefillConfig config, OpenTelemetry tracing, MeshMetrics metrics) throws Exception {
        // Quarkus's SDK traces; the metrics are always recorded, for /q/metrics (and OTLP when configured)
        OpenTelemetry otel = metrics.withTracing(tracing);
        model = MeshModel.load(config.model(), Services.backend(config.backend()));
        try {
            List<String> experts = config.experts().orElse(List.of());
            // fixed host:port shards or dns:name:port (a headless Service), followed as shards come and go
            if (!experts.isEmpty()) remotes.add(new LiveExperts(model, PeerSet.of(experts), 30_000, 120_000, 30_000));
            var forward = Services.workerModel(model, remotes.isEmpty() ? null : remotes.getFirst(), otel);
            id = config.id().orElse("prefill-" + ProcessHandle.current().pid());
            worker = new PrefillWorker(new PrefillWorker.Settings(id, config.kafka(), config.topic(), config.prefillGroup(),
                    config.chunkBytes(), 30_000, 50, config.prefillBatchTokens(), config.prefillBatchMax()), model, forward, otel);
            LOG.infof("prefill worker %s: Kafka %s, topic %s, experts %s", id, config.kafka(), config.topic(),
                    remotes.isEmpty() ? "in-process" : "on " + experts);
        } catch (Exception | Error e) {
            remotes.forEach(LiveExperts::close);
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
        remotes.forEach(LiveExperts::close);
        model.close();
    }
}
