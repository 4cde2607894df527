package io.lightmesh.expert.app;

import io.grpc.BindableService;
import io.lightmesh.expert.ExpertShard;
import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshMetrics;
import io.lightmesh.mesh.MeshModel;
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
import java.util.Arrays;
import java.util.List;

/**
 * The expert shard of this process. Its calls are short and each connection sends one batch at a time, so they run
 * on Quarkus's gRPC event loops without a hand-off (as the plain server ran them on its transport threads). Built on
 * the main thread at start-up, after the gRPC server started: until then the services answer UNAVAILABLE
 * ({@link DeferredServices}).
 */
@Startup
@Singleton
public class ExpertNode {
    private static final Logger LOG = Logger.getLogger(ExpertNode.class);

    private final MeshModel model;
    private final ExpertShard shard;

    /** Where the gRPC service beans find the shard's services once it is built. */
    @Produces
    @Singleton
    static DeferredServices services() { return new DeferredServices(); }

    ExpertNode(ExpertConfig config, OpenTelemetry tracing, DeferredServices services, MeshMetrics metrics) throws Exception {
        // Quarkus's SDK traces; the metrics are always recorded, for /q/metrics
        OpenTelemetry otel = metrics.withTracing(tracing);
        boolean empty = config.shard().trim().equalsIgnoreCase("none");
        String[] is = config.shard().split("/");
        if (!empty && is.length != 2) throw new IllegalArgumentException("expert: lightmesh.shard must be I/N, e.g. 0/2, or none, not " + config.shard());
        int index = empty ? 0 : Integer.parseInt(is[0].trim()), count = empty ? 1 : Integer.parseInt(is[1].trim());
        int podIndex = index; // names the shard: a replica keeps its own id
        // a pod index beyond the shard count (a StatefulSet scaled past it): a replica of shard index % count
        if (!empty && count > 0 && index >= count) {
            LOG.infof("expert: shard %d of %d is a replica of shard %d", index, count, index % count);
            index = index % count;
        }
        if (config.expertSlots().isPresent() && config.expertSlots().get() < 0) {
            throw new IllegalArgumentException("expert: lightmesh.expert-slots must be >= 0, not " + config.expertSlots().get());
        }
        // the shard's own set (ExpertShard) holds the experts it serves: the model's in-process ones stay off the device
        model = MeshModel.load(config.model(), Services.backend(config.backend()), false);
        try {
            int[] experts = empty ? new int[0] : ExpertPlacement.expertsOf(index, count, model.config().numExperts());
            int[] layers = config.layers().orElse(List.of()).stream().mapToInt(Integer::intValue).toArray();
            String host = config.host();
            String id = config.id().orElse("expert-" + podIndex);
            String advertise = config.advertise().orElse((host.equals("0.0.0.0") ? InetAddress.getLocalHost().getHostName() : host)
                    + ":" + config.grpcPort());
            ExpertPlacement.Shard start = empty ? ExpertPlacement.Shard.of(id, advertise, java.util.Map.of())
                    : new ExpertPlacement.Shard(id, advertise, layers, experts);
            int share = start.pairs(model.config().numLayers(), model.config().numExperts()).length;
            int slots = ExpertShard.slotCapacity(model,
                    config.expertSlots().map(k -> java.util.OptionalInt.of((int) Math.min(Integer.MAX_VALUE, (long) share + k))).orElse(java.util.OptionalInt.empty()),
                    config.expertMemoryGib().map(g -> java.util.OptionalLong.of((long) (g * (1L << 30)))).orElse(java.util.OptionalLong.empty()));
            shard = new ExpertShard(start, model, otel, slots);
            for (BindableService s : shard.services()) services.publish(Grpc.traced(s));
            services.markReady();
            LOG.infof("expert shard %s (advertised %s): experts %s of %s, %d expert slots", id, advertise,
                    empty ? "none" : Arrays.toString(experts), layers.length == 0 ? "every layer" : "layers " + Arrays.toString(layers), slots);
        } catch (Exception | Error e) {
            model.close();
            throw e;
        }
    }

    public ExpertShard shard() { return shard; }

    void stop(@Observes ShutdownEvent e) {
        LOG.info("expert shard: stopping");
        shard.close();
    }

    /** After the gRPC server stopped (Quarkus destroys beans last), so no call computes on an unmapped model. */
    @PreDestroy
    void release() { model.close(); }
}
