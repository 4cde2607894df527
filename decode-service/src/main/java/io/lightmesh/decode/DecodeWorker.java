package io.lightmesh.decode;

import io.grpc.BindableService;
import io.grpc.Status;
import io.lightmesh.engine.generate.ContinuousBatcher;
import io.lightmesh.engine.generate.Generation;
import io.lightmesh.engine.model.ForwardPath;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.WorkerPath;
import io.lightmesh.proto.v1.WorkerInfo;
import io.lightmesh.proto.v1.WorkerKind;
import io.lightmesh.proto.v1.WorkerLoad;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.trace.Tracer;

import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * A decode worker: accepts sequence states within a byte budget (StateTransfer), runs them with the engine's
 * {@link ContinuousBatcher} (sequences join and leave the batch between steps; each is an engine {@link Generation},
 * rebuilt from the spec and the tokens generated before the hand-off), and streams their tokens and text to whoever
 * follows them (Decode.Generate). A sequence's state is freed when it finishes, is cancelled, or fails.
 *
 * <p>Budget: a sequence is charged the serialised size of its state at its longest (position + max_new_tokens),
 * once per choice (a request asking for n samples decodes n copies of its prefilled state), so an accepted sequence
 * never outgrows the budget.
 *
 * <p>This class wires the parts: the {@link SlotTable} (requests and budget), the {@link DecodeLoop} (batched steps
 * and token events), the gRPC services {@link StateTransferImpl} (with a {@link StateReceiver} per hand-off),
 * {@link DecodeImpl} and {@link WorkerImpl}, and the {@link DecodeMetrics}.
 */
public final class DecodeWorker implements AutoCloseable {
    /** Settings of a decode worker (config keys lightmesh.decode.*). */
    public record Settings(String workerId, String address, long stateBudgetBytes, int maxBatch, long stateWaitMs) {}

    private final Settings settings;
    private final MeshModel meshModel;
    private final MiniMaxModel model; // local or remote experts
    private final boolean remoteExperts;
    private final SlotTable slots;
    private final DecodeMetrics metrics;
    private final DecodeLoop loop;
    private final ScheduledExecutorService timers = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "decode-timers");
        t.setDaemon(true);
        return t;
    });
    private final List<BindableService> services;
    /** Metrics: decode steps, sequences summed over steps (mean batch size = rows / steps), step nanoseconds. */
    public final LongAdder steps, stepRows, stepNanos;
    public final AtomicLong stateBytesReceived;

    public DecodeWorker(Settings settings, MeshModel meshModel, MiniMaxModel model, boolean remoteExperts) {
        this(settings, meshModel, model, remoteExperts, OpenTelemetry.noop());
    }

    /**
     * @param otel spans: "lightmesh.state receive" per hand-off, "lightmesh.decode" per sequence, "lightmesh.decode step"
     *             per batched step (child of the batch's first sequence, linked to the others: expert calls made
     *             during the step carry it); metrics: batch size, step time, state bytes received, active sequences
     */
    public DecodeWorker(Settings settings, MeshModel meshModel, MiniMaxModel model, boolean remoteExperts, OpenTelemetry otel) {
        Tracer tracer = otel.getTracer(MeshTelemetry.SCOPE);
        this.settings = settings;
        this.meshModel = meshModel;
        this.model = model;
        this.remoteExperts = remoteExperts;
        this.slots = new SlotTable(settings.stateBudgetBytes());
        this.metrics = new DecodeMetrics(otel, settings.workerId());
        this.steps = metrics.steps;
        this.stepRows = metrics.stepRows;
        this.stepNanos = metrics.stepNanos;
        this.stateBytesReceived = metrics.stateBytesReceived;
        WorkerPath.announce("decode", settings.workerId(), model, otel);
        this.loop = new DecodeLoop(settings.workerId(), model, settings.maxBatch(), slots, metrics, tracer);
        metrics.observe(loop::active, slots::usedBytes, settings.stateBudgetBytes());
        this.services = List.of(new StateTransferImpl(slots,
                        ack -> new StateReceiver(settings.workerId(), meshModel, slots, loop, metrics, tracer, ack)),
                new DecodeImpl(slots, loop, timers, settings.stateWaitMs()), new WorkerImpl(this::workerInfo));
        loop.start();
    }

    /** StateTransfer, Decode and Worker. */
    public List<BindableService> services() { return services; }

    public boolean cancelRequest(String id, String reason) {
        return cancelRequest(id, Status.CANCELLED.withDescription(reason));
    }

    /** Cancels a request, its follower ending with {@code why} (CANCELLED, or UNAVAILABLE when a prefill worker cannot compute it now). */
    public boolean cancelRequest(String id, Status why) { return loop.cancel(id, why); }

    /** State bytes charged: held sequences, hand-offs in progress and reservations. */
    public long usedBytes() { return slots.usedBytes(); }

    public WorkerInfo workerInfo() {
        int pending = slots.pendingReservations();
        return WorkerPath.describe(WorkerInfo.newBuilder(), model)
                .setWorkerId(settings.workerId()).setKind(WorkerKind.WORKER_KIND_DECODE)
                .setAddress(settings.address()).setModelFingerprint(meshModel.fingerprint()).setRemoteExperts(remoteExperts)
                .setLoad(WorkerLoad.newBuilder().setActiveSequences(loop.active() + loop.joining()).setPendingSequences(pending)
                        .setStateBytesUsed(usedBytes()).setStateBytesBudget(settings.stateBudgetBytes()).setMaxBatch(settings.maxBatch()))
                .build();
    }

    /** The path this worker's engine runs (decode, prefill, experts, micro-batching). */
    public ForwardPath path() { return model.path(); }

    /** Sequences holding state now (decoding or about to). */
    public int liveSequences() { return slots.liveSequences(); }

    @Override
    public void close() {
        metrics.close();
        loop.close();
        timers.shutdownNow();
        for (Slot s : slots.all()) s.fail(Status.UNAVAILABLE.withDescription("decode worker " + settings.workerId() + " is shutting down"));
    }
}
