package io.lightmesh.mesh;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.backend.opencl.OpenClException;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.model.ExpertExecutor;
import io.lightmesh.engine.model.LocalExperts;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.opentelemetry.api.OpenTelemetry;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.logging.Logger;

/**
 * What starting any service needs, shared by the embedded mesh (mesh-launcher) and the services' Quarkus
 * applications: the engine backend, the worker model (experts in-process or remote) and expert discovery.
 */
public final class Services {
    private static final Logger LOG = Logger.getLogger(Services.class.getName());

    private Services() {}

    /**
     * The engine backend of a service process, as {@link Backends#create}, except in a JVM started without
     * {@code --add-modules jdk.incubator.vector} (a plain {@code java -jar}): there the vector backend cannot load,
     * so {@code auto} tries OpenCL and then falls back to {@code reference} with a warning, and {@code vector}
     * fails with the option to add.
     */
    public static TensorOps backend(String name) {
        if (ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent()) return Backends.create(name);
        String n = name.trim().toLowerCase(Locale.ROOT);
        if (n.equals("vector")) {
            throw new IllegalArgumentException("backend 'vector' needs the JVM option --add-modules jdk.incubator.vector");
        }
        if (!n.equals("auto")) return Backends.create(name);
        try {
            return Backends.create("opencl");
        } catch (OpenClException e) {
            LOG.warning("backend 'auto': no OpenCL device and no jdk.incubator.vector module in this JVM (start it with"
                    + " --add-modules jdk.incubator.vector for the vector backend); using the reference backend");
            return new ReferenceOps();
        }
    }

    /**
     * The model a prefill or decode worker runs: experts in-process ({@code placement} null) or on the shards of
     * {@code placement}, counted per (layer, expert) on {@code otel}'s meter.
     *
     * @param remotes receives the RemoteExperts made (the caller closes it)
     */
    public static MiniMaxModel workerModel(MeshModel model, ExpertPlacement placement, OpenTelemetry otel, Consumer<RemoteExperts> remotes) {
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
     * The model a prefill or decode worker runs: experts in-process ({@code remote} null) or computed by {@code remote}
     * (e.g. {@link LiveExperts}, following discovered shards), counted per (layer, expert) on {@code otel}'s meter.
     */
    public static MiniMaxModel workerModel(MeshModel model, ExpertExecutor remote, OpenTelemetry otel) {
        ExpertExecutor experts = remote != null ? remote : new LocalExperts(model.config(), model.model().weights(), model.model().ops());
        return model.model().withExperts(new CountingExperts(experts, otel.getMeter(MeshTelemetry.SCOPE),
                model.config().numLayers(), model.config().numExperts()));
    }

    /**
     * The placement map of running expert shards, asked from each (Worker.Describe: id and held (layer, expert)
     * pairs), retried until every shard answers with this model's fingerprint and every pair is held, or the wait
     * ends.
     */
    public static ExpertPlacement discover(MeshModel model, List<String> targets, long waitMs) throws InterruptedException {
        long until = System.currentTimeMillis() + waitMs;
        while (true) {
            Described d = describeShards(model, targets);
            if (d.placement() != null) return d.placement();
            if (System.currentTimeMillis() > until) throw new IllegalStateException("expert placement incomplete: " + d.problem());
            LOG.info("waiting for expert shards: " + d.problem());
            Thread.sleep(1000);
        }
    }

    /** One asking round: the placement when complete, else why not. */
    public record Described(ExpertPlacement placement, String problem) {}

    /**
     * Asks each target once (two-second deadline) what it holds. A shard of another model is an error; unreachable
     * ones are left out (a pod going away while still listed), so the placement is complete when the shards that
     * answered hold every (layer, expert) pair; otherwise the problem names what is missing, to wait out.
     */
    public static Described describeShards(MeshModel model, List<String> targets) {
        if (targets.isEmpty()) return new Described(null, "no expert shard known yet");
        List<ExpertPlacement.Shard> shards = new ArrayList<>();
        String problem = null;
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
        ExpertPlacement p = new ExpertPlacement(model.config().numLayers(), model.config().numExperts(), shards);
        if (p.missing().isEmpty()) return new Described(p, null);
        return new Described(null, problem != null ? problem
                : p.missing().size() + " (layer/expert) pairs held by no shard, e.g. " + p.missing().get(0));
    }
}
