package io.lightmesh.decode.app;

import io.grpc.BindableService;
import io.grpc.ServerInterceptors;
import io.lightmesh.decode.DecodeWorker;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.mesh.PlacementSource;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshMetrics;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.OffloadingInterceptor;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.mesh.Services;
import io.opentelemetry.api.OpenTelemetry;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.Startup;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.event.Observes;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Singleton;
import org.jboss.logging.Logger;

import java.net.InetAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The decode worker of this process: the model on the configured backend, the experts in-process or on the shards
 * (discovered at start-up, waiting up to two minutes for every (layer, expert) to be held), one {@link DecodeWorker}.
 * On SIGTERM the worker closes first, while the gRPC server still runs: its sequences end with UNAVAILABLE, so the
 * router resumes them on another decode worker, and their state is freed.
 *
 * <p>Built on the main thread at start-up ({@link Startup}), after Quarkus's gRPC server started: until then the
 * services answer UNAVAILABLE ({@link DeferredServices}) and readiness is DOWN.
 */
@Startup
@Singleton
public class DecodeNode {
    private static final Logger LOG = Logger.getLogger(DecodeNode.class);

    private final MeshModel model;
    private final List<RemoteExperts> remotes = new ArrayList<>();
    private final DecodeWorker worker;
    private final ExecutorService handlers = Executors.newVirtualThreadPerTaskExecutor();
    /** Where the gRPC service beans find the worker's services once it is built. */
    @Produces
    @Singleton
    static DeferredServices services() { return new DeferredServices(); }

    DecodeNode(DecodeConfig config, OpenTelemetry tracing, DeferredServices services, MeshMetrics metrics) throws Exception {
        // Quarkus's SDK traces; the metrics are always recorded, for /q/metrics
        OpenTelemetry otel = metrics.withTracing(tracing);
        // with remote experts the model's in-process ones are not put on a device up front
        model = MeshModel.load(config.model(), Services.backend(config.backend()), config.experts().isEmpty() && config.placement().isEmpty());
        try {
            List<String> experts = config.experts().orElse(List.of());
            // the controller's placement, or the shards' own: fixed host:port, or dns:name:port followed as shards come and go
            PlacementSource placement = Services.placementSource(model, config.placement(), experts, config.id(), 120_000);
            var forward = Services.workerModel(model, placement, otel, remotes::add, io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE);
            String host = config.host();
            String advertise = config.advertise().orElse((host.equals("0.0.0.0") ? InetAddress.getLocalHost().getHostName() : host)
                    + ":" + config.grpcPort());
            worker = new DecodeWorker(new DecodeWorker.Settings(config.id(), advertise, (long) (config.budgetGib() * (1L << 30)),
                    config.maxBatch(), config.stateWaitMs()), model, forward, placement != null, otel);
            OffloadingInterceptor offload = new OffloadingInterceptor(handlers);
            for (BindableService s : worker.services()) {
                services.publish(ServerInterceptors.intercept(Grpc.traced(s), offload));
            }
            services.markReady();
            LOG.infof("decode worker %s (advertised %s), experts %s", config.id(), advertise,
                    placement == null ? "in-process" : config.placement().map(c -> "placed by the controller at " + c).orElse("on " + experts));
        } catch (Exception | Error e) {
            remotes.forEach(RemoteExperts::close);
            model.close();
            throw e;
        }
    }

    public DecodeWorker worker() { return worker; }

    void stop(@Observes ShutdownEvent e) {
        LOG.info("decode worker: stopping (" + worker.liveSequences() + " sequences held)");
        worker.close();
    }

    /** After the gRPC server stopped (Quarkus destroys beans last): the expert channels, then the model's mapping. */
    @PreDestroy
    void release() {
        handlers.shutdown();
        remotes.forEach(RemoteExperts::close);
        model.close();
    }
}
