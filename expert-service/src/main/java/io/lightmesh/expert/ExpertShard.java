package io.lightmesh.expert;

import io.grpc.BindableService;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.model.LocalExperts;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Floats;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.proto.v1.ActivationDType;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.ExpertAssignment;
import io.lightmesh.proto.v1.ExpertBatch;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.ExpertResult;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.PlacementRequest;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.lightmesh.proto.v1.WorkerKind;
import io.lightmesh.proto.v1.WorkerLoad;

import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;

import java.util.List;
import java.util.concurrent.atomic.LongAdder;

/**
 * An expert shard: hosts the experts of its {@link ExpertPlacement.Shard} (all layers or a slice) and computes
 * batched expert calls, {@code sum_k w_k * expert_k(x)} over the slots it is given (-1 slots skipped).
 */
public final class ExpertShard {
    private final ExpertPlacement.Shard shard;
    private final MeshModel model;
    private final LocalExperts experts;
    private final LongAdder batches = new LongAdder();
    private final Tracer tracer;
    /** Tokens computed per (layer, expert) held: the expert load an autoscaler of shards (and the placement) reads. */
    private final io.opentelemetry.api.metrics.LongCounter tokens;
    private final io.opentelemetry.api.common.Attributes[] tokenAttributes; // [layer * E + expert]

    public ExpertShard(ExpertPlacement.Shard shard, MeshModel model) {
        this(shard, model, OpenTelemetry.noop());
    }

    /** @param otel a span "lightmesh.expert compute" per batch, child of the caller's span (metadata or the batch's traceparent) */
    public ExpertShard(ExpertPlacement.Shard shard, MeshModel model, OpenTelemetry otel) {
        this.tracer = otel.getTracer(MeshTelemetry.SCOPE);
        this.shard = shard;
        this.model = model;
        this.experts = new LocalExperts(model.config(), model.model().weights(), model.model().ops(), shard::holds);
        this.tokens = otel.getMeter(MeshTelemetry.SCOPE).counterBuilder("lightmesh.expert.tokens").setUnit("{token}")
                .setDescription("Tokens this shard computed for each (layer, expert) it holds (a token counts once per chosen expert)").build();
        int L = model.config().numLayers(), E = model.config().numExperts();
        var layer = io.opentelemetry.api.common.AttributeKey.longKey("lightmesh.layer");
        var expert = io.opentelemetry.api.common.AttributeKey.longKey("lightmesh.expert");
        var shardId = io.opentelemetry.api.common.AttributeKey.stringKey("lightmesh.shard");
        this.tokenAttributes = new io.opentelemetry.api.common.Attributes[L * E];
        for (int l = 0; l < L; l++) {
            for (int e = 0; e < E; e++) tokenAttributes[l * E + e] = io.opentelemetry.api.common.Attributes.of(layer, (long) l, expert, (long) e, shardId, shard.id());
        }
    }

    public List<BindableService> services() { return List.of(new ExpertService(), new WorkerService()); }

    /** Computes one batch in a span whose parent is {@code parent} (the caller's). */
    public ExpertResult compute(ExpertBatch b, Context parent) {
        Span span = tracer.spanBuilder("lightmesh.expert compute").setSpanKind(SpanKind.SERVER).setParent(parent)
                .setAttribute("lightmesh.shard", shard.id()).setAttribute("lightmesh.layer", b.getLayer())
                .setAttribute("lightmesh.tokens", b.getNumTokens()).startSpan();
        try {
            return compute(b);
        } catch (RuntimeException e) {
            span.setStatus(StatusCode.ERROR, e.toString());
            throw e;
        } finally {
            span.end();
        }
    }

    public ExpertResult compute(ExpertBatch b) {
        long t0 = System.nanoTime();
        int h = model.config().hiddenSize(), n = b.getNumTokens(), k = b.getTopK();
        if (b.getDtype() == ActivationDType.ACTIVATION_DTYPE_BF16) throw new IllegalArgumentException("bf16 activations are not supported yet");
        if (b.getLayer() < 0 || b.getLayer() >= model.config().numLayers()) throw new IllegalArgumentException("layer " + b.getLayer() + " out of range");
        if (b.getExpertsCount() != n * k || b.getWeightsCount() != n * k) {
            throw new IllegalArgumentException("experts/weights must have num_tokens * top_k = " + n * k + " entries");
        }
        float[] x = new float[n * h];
        Floats.fromBytes(b.getHidden(), x, 0, n * h);
        int[] ex = new int[n * k];
        float[] w = new float[n * k];
        int hostedAny = -1;
        for (int i = 0; i < n * k; i++) {
            int e = b.getExperts(i);
            if (e >= 0) {
                if (!shard.holds(b.getLayer(), e)) throw new IllegalArgumentException("expert " + e + " of layer " + b.getLayer() + " is not on shard " + shard.id());
                hostedAny = e;
            }
        }
        for (int i = 0; i < n * k; i++) {
            int e = b.getExperts(i);
            if (e >= 0) tokens.add(1, tokenAttributes[b.getLayer() * model.config().numExperts() + e]);
        }
        for (int i = 0; i < n * k; i++) {
            int e = b.getExperts(i);
            // a skipped slot is computed by a hosted expert with weight 0: exact, and keeps LocalExperts unchanged
            ex[i] = e >= 0 ? e : hostedAny;
            w[i] = e >= 0 ? b.getWeights(i) : 0f;
        }
        float[] out = new float[n * h];
        if (hostedAny >= 0) experts.run(b.getLayer(), x, n, k, ex, w, out);
        batches.increment();
        return ExpertResult.newBuilder().setCallId(b.getCallId()).setLayer(b.getLayer()).setNumTokens(n)
                .setDtype(ActivationDType.ACTIVATION_DTYPE_F32).setCombined(Floats.toBytes(out, 0, n * h))
                .setComputeUs((System.nanoTime() - t0) / 1000).build();
    }

    final class ExpertService extends ExpertGrpc.ExpertImplBase {
        @Override
        public void compute(ExpertBatch b, StreamObserver<ExpertResult> out) {
            try {
                out.onNext(ExpertShard.this.compute(b, Context.current())); // the caller's context, from the call's metadata
                out.onCompleted();
            } catch (IllegalArgumentException e) {
                out.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
            }
        }

        @Override
        public StreamObserver<ExpertBatch> computeStream(StreamObserver<ExpertResult> out) {
            return new StreamObserver<>() {
                @Override public void onNext(ExpertBatch b) {
                    // one long-lived stream carries many requests' batches: each names its own trace
                    try { out.onNext(ExpertShard.this.compute(b, b.getTraceparent().isEmpty() ? Context.current() : MeshTelemetry.fromTraceparent(b.getTraceparent()))); }
                    catch (IllegalArgumentException e) { out.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException()); }
                }
                @Override public void onError(Throwable t) {}
                @Override public void onCompleted() { out.onCompleted(); }
            };
        }

        @Override
        public void getPlacement(PlacementRequest req, StreamObserver<PlacementMap> out) {
            out.onNext(new ExpertPlacement(model.config().numLayers(), model.config().numExperts(), List.of(shard)).toProto());
            out.onCompleted();
        }
    }

    final class WorkerService extends WorkerGrpc.WorkerImplBase {
        @Override
        public void describe(DescribeRequest req, StreamObserver<WorkerInfo> out) {
            ExpertAssignment.Builder a = ExpertAssignment.newBuilder();
            for (int l : shard.layers()) a.addLayers(l);
            for (int e : shard.experts()) a.addExperts(e);
            out.onNext(WorkerInfo.newBuilder().setWorkerId(shard.id()).setKind(WorkerKind.WORKER_KIND_EXPERT).setAddress(shard.address())
                    .setModelFingerprint(model.fingerprint()).setExperts(a)
                    .setLoad(WorkerLoad.newBuilder().setBatchesServed(batches.sum())).build());
            out.onCompleted();
        }
    }
}
