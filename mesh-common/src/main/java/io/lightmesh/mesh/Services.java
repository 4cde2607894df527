package io.lightmesh.mesh;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.backend.Backends;
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
     * so {@code auto} tries an OpenCL GPU and then falls back to {@code reference} with a warning, and {@code vector}
     * fails with the option to add.
     */
    public static TensorOps backend(String name) {
        if (ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent()) return Backends.create(name);
        String n = name.trim().toLowerCase(Locale.ROOT);
        if (n.equals("vector")) {
            throw new IllegalArgumentException("backend 'vector' needs the JVM option --add-modules jdk.incubator.vector");
        }
        if (!n.equals("auto")) return Backends.create(name);
        TensorOps gpu = Backends.gpuOrNull();
        if (gpu != null) {
            LOG.info("backend 'auto': " + Backends.describe(gpu));
            return gpu;
        }
        LOG.warning("backend 'auto': no OpenCL GPU and no jdk.incubator.vector module in this JVM (start it with"
                + " --add-modules jdk.incubator.vector for the vector backend); using the reference backend");
        return new ReferenceOps();
    }

    /**
     * The model a prefill or decode worker runs: experts in-process ({@code placement} null) or on the shards of
     * {@code placement} (a fixed map: failover among its replicas only), counted per (layer, expert) on
     * {@code otel}'s meter.
     *
     * @param remotes receives the RemoteExperts made (the caller closes it)
     */
    public static MiniMaxModel workerModel(MeshModel model, ExpertPlacement placement, OpenTelemetry otel, Consumer<RemoteExperts> remotes) {
        return workerModel(model, placement == null ? null : PlacementSource.fixed(placement), otel, remotes);
    }

    /**
     * As above, routed by the newest placement of {@code source} (null: experts in-process). The RemoteExperts made
     * owns the source and closes it.
     */
    public static MiniMaxModel workerModel(MeshModel model, PlacementSource source, OpenTelemetry otel, Consumer<RemoteExperts> remotes) {
        return workerModel(model, source, otel, remotes, io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_UNSPECIFIED);
    }

    /**
     * As above, for a worker whose expert batches are of {@code callClass}: a decode worker's DECODE, a prefill
     * worker's PREFILL (split into chunks of {@code lightmesh.expert.prefillChunkRows} rows when set:
     * {@link RemoteExperts.Settings#defaults(String, io.lightmesh.proto.v1.ExpertCallClass)}).
     */
    public static MiniMaxModel workerModel(MeshModel model, PlacementSource source, OpenTelemetry otel, Consumer<RemoteExperts> remotes,
                                           io.lightmesh.proto.v1.ExpertCallClass callClass) {
        ExpertExecutor experts;
        if (source == null) {
            experts = new LocalExperts(model.config(), model.model().weights(), model.model().ops());
        } else {
            RemoteExperts r = new RemoteExperts(source, model.config().hiddenSize(), RemoteExperts.Settings.defaults("worker", callClass), true,
                    new int[] {model.config().numLayers(), model.config().numExperts()});
            remotes.accept(r);
            experts = r;
        }
        return model.model().withExperts(new CountingExperts(experts, otel.getMeter(MeshTelemetry.SCOPE),
                model.config().numLayers(), model.config().numExperts()));
    }

    /**
     * Where a prefill or decode worker's experts are: null for in-process (neither given); a placement controller's
     * Watch stream when {@code controller} is given (its first complete map waited for up to {@code waitMs});
     * otherwise the shards {@code experts}: a fixed map discovered from them ({@link #discover}) when every entry is
     * a fixed {@code host:port}, or, when some entry is {@code dns:name:port}, a {@link DiscoveredPlacement} that
     * follows the shards as they come and go.
     */
    public static PlacementSource placementSource(MeshModel model, java.util.Optional<String> controller, List<String> experts,
                                                  String workerId, long waitMs) throws InterruptedException {
        if (controller.isPresent() && !controller.get().isBlank()) {
            PlacementClient c = PlacementClient.start(new PlacementClient.Settings(controller.get().trim(), workerId,
                    model.config().numLayers(), model.config().numExperts()));
            try {
                ExpertPlacement first = c.awaitFirst(waitMs);
                LOG.info(workerId + ": expert placement version " + first.version() + " from the controller at " + controller.get()
                        + " (" + first.shards().size() + " shards)");
                return c;
            } catch (InterruptedException | RuntimeException e) {
                c.close();
                throw e;
            }
        }
        if (experts.isEmpty()) return null;
        PeerSet shards = PeerSet.of(experts);
        if (!shards.discovering()) {
            shards.close();
            return PlacementSource.fixed(discover(model, experts, waitMs));
        }
        return DiscoveredPlacement.start(model, shards, workerId, waitMs);
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
            String problem = d.unreachable() != null ? d.unreachable() : d.missing();
            if (problem == null) return d.placement();
            if (System.currentTimeMillis() > until) throw new IllegalStateException("expert placement incomplete: " + problem);
            LOG.info("waiting for expert shards: " + problem);
            Thread.sleep(1000);
        }
    }

    /**
     * One asking round.
     *
     * @param placement   the shards that answered (version 0), complete or not
     * @param unreachable the last shard that did not answer and why; null when all did
     */
    public record Described(ExpertPlacement placement, String unreachable) {
        /** Null when the shards that answered hold every (layer, expert) pair; else what is missing. */
        public String missing() {
            if (placement.shards().isEmpty()) return "no expert shard answered" + (unreachable == null ? "" : " (" + unreachable + ")");
            List<String> m = placement.missing();
            return m.isEmpty() ? null : m.size() + " (layer/expert) pairs held by no shard, e.g. " + m.get(0)
                    + (unreachable == null ? "" : " (" + unreachable + ")");
        }
    }

    /**
     * Asks each target once (two-second deadline) what it holds. A shard of another model is an error; an unreachable
     * one is left out of the placement (a pod going away while still listed) and named in {@link Described#unreachable}.
     */
    public static Described describeShards(MeshModel model, List<String> targets) {
        List<ExpertPlacement.Shard> shards = new ArrayList<>();
        java.util.Set<String> ids = new java.util.HashSet<>();
        String problem = null;
        for (String t : targets) {
            ManagedChannel ch = Grpc.channel(t);
            try {
                WorkerInfo w = WorkerGrpc.newBlockingStub(ch).withDeadlineAfter(2, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
                if (!w.getModelFingerprint().equals(model.fingerprint())) {
                    throw new IllegalStateException("expert shard " + t + " runs model " + w.getModelFingerprint() + ", this worker " + model.fingerprint());
                }
                if (ids.add(w.getWorkerId())) {
                    shards.add(ExpertPlacement.Shard.fromWorkerInfo(w, t));
                } else { // a pod replaced under the same name, its old address still answering: one of them suffices
                    LOG.warning("expert shard id " + w.getWorkerId() + " answers at two addresses; using the first, not " + t);
                }
            } catch (StatusRuntimeException e) {
                problem = "expert shard " + t + ": " + e.getStatus();
            } finally {
                Grpc.shutdown(ch);
            }
        }
        return new Described(new ExpertPlacement(model.config().numLayers(), model.config().numExperts(), shards), problem);
    }
}
