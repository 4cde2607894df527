package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.model.ExpertExecutor;
import io.lightmesh.engine.model.LocalExperts;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.mesh.CountingExperts;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.opentelemetry.api.OpenTelemetry;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.logging.Logger;

/** What starting any service needs, shared by the embedded mesh and the single-service commands of {@link Main}. */
final class Services {
    private static final Logger LOG = Logger.getLogger(Services.class.getName());

    private Services() {}

    /**
     * The model a prefill or decode worker runs: experts in-process ({@code placement} null) or on the shards of
     * {@code placement}, counted per (layer, expert) on {@code otel}'s meter.
     *
     * @param remotes receives the RemoteExperts made (the caller closes it)
     */
    static MiniMaxModel workerModel(MeshModel model, ExpertPlacement placement, OpenTelemetry otel, Consumer<RemoteExperts> remotes) {
        ExpertExecutor experts;
        if (placement == null) {
            experts = new LocalExperts(model.config(), model.model().weights(), model.model().ops());
        } else {
            RemoteExperts r = new RemoteExperts(placement, model.config().hiddenSize(), 30_000);
            remotes.accept(r);
            experts = r;
        }
        return model.model().withExperts(new CountingExperts(experts, otel.getMeter(MeshTelemetry.SCOPE),
                model.config().numLayers(), model.config().numExperts()));
    }

    /**
     * The placement map of running expert shards, asked from each (Worker.Describe: id and held (layer, expert)
     * pairs), retried until every shard answers with this model's fingerprint and every pair is held, or the wait
     * ends.
     */
    static ExpertPlacement discover(MeshModel model, List<String> targets, long waitMs) throws InterruptedException {
        long until = System.currentTimeMillis() + waitMs;
        String problem = "no shard asked yet";
        while (true) {
            List<ExpertPlacement.Shard> shards = new ArrayList<>();
            problem = null;
            for (String t : targets) {
                ManagedChannel ch = Grpc.channel(t);
                try {
                    WorkerInfo w = WorkerGrpc.newBlockingStub(ch).withDeadlineAfter(2, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
                    if (!w.getModelFingerprint().equals(model.fingerprint())) {
                        throw new IllegalStateException("expert shard " + t + " runs model " + w.getModelFingerprint() + ", this worker " + model.fingerprint());
                    }
                    shards.add(new ExpertPlacement.Shard(w.getWorkerId(), t, w.getExperts().getLayersList().stream().mapToInt(Integer::intValue).toArray(),
                            w.getExperts().getExpertsList().stream().mapToInt(Integer::intValue).toArray()));
                } catch (StatusRuntimeException e) {
                    problem = "expert shard " + t + ": " + e.getStatus();
                } finally {
                    Grpc.shutdown(ch);
                }
            }
            if (problem == null) {
                ExpertPlacement p = new ExpertPlacement(model.config().numLayers(), model.config().numExperts(), shards);
                if (p.missing().isEmpty()) return p;
                problem = p.missing().size() + " (layer/expert) pairs held by no shard, e.g. " + p.missing().get(0);
            }
            if (System.currentTimeMillis() > until) throw new IllegalStateException("expert placement incomplete: " + problem);
            LOG.info("waiting for expert shards: " + problem);
            Thread.sleep(1000);
        }
    }
}
