package io.lightmesh.mesh;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.model.ExpertExecutor;
import io.lightmesh.proto.v1.ActivationDType;
import io.lightmesh.proto.v1.ExpertBatch;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.ExpertResult;
import io.opentelemetry.context.Context;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * The MoE experts of a layer computed by expert shards over gRPC. Per call, the rows routed to each shard are
 * packed into one {@link ExpertBatch} (slots held elsewhere marked -1); the batches of all shards are sent before
 * any answer is awaited, so the shards compute in parallel; their partial sums are added. Each shard is reached over
 * one long-lived {@code ComputeStream} (no new HTTP/2 stream per layer), answers matched by call id and completed on
 * the transport thread (direct executor: no hand-off to a pool). A failed stream fails its pending calls and is
 * reopened by the next call. Safe for concurrent calls. Records the round-trip time per layer.
 */
public final class RemoteExperts implements ExpertExecutor, AutoCloseable {
    private final ExpertPlacement placement;
    private final int hidden;
    private final Link[] links;
    private final AtomicLong callIds = new AtomicLong();
    private final long timeoutMs;
    /** Per layer: nanoseconds spent in run(), number of calls, and the slowest shard's compute, for the benchmark. */
    private final LongAdder[] nanos, calls, computeMicros;
    /** Per layer and expert: tokens routed. */
    private final LongAdder[] tokensPerExpert;

    /** One shard: its channel and the stream to it (opened lazily, replaced after a failure). */
    private static final class Link {
        final ExpertPlacement.Shard shard;
        final ManagedChannel channel;
        final Map<Long, CompletableFuture<ExpertResult>> pending = new ConcurrentHashMap<>();
        StreamObserver<ExpertBatch> out; // guarded by this

        Link(ExpertPlacement.Shard shard) {
            this.shard = shard;
            this.channel = Grpc.directChannel(shard.address());
        }

        synchronized void send(ExpertBatch b, CompletableFuture<ExpertResult> answer) {
            pending.put(b.getCallId(), answer);
            if (out == null) {
                out = ExpertGrpc.newStub(channel).computeStream(new StreamObserver<>() {
                    @Override public void onNext(ExpertResult r) {
                        CompletableFuture<ExpertResult> f = pending.remove(r.getCallId());
                        if (f != null) f.complete(r);
                    }
                    @Override public void onError(Throwable t) { broken(this, t); }
                    @Override public void onCompleted() { broken(this, Status.UNAVAILABLE.withDescription("stream closed by the shard").asRuntimeException()); }
                });
            }
            out.onNext(b);
        }

        /** The stream ended: its pending calls fail, the next call opens a new one. */
        private void broken(StreamObserver<ExpertResult> observer, Throwable t) {
            synchronized (this) { out = null; }
            for (Long id : pending.keySet()) {
                CompletableFuture<ExpertResult> f = pending.remove(id);
                if (f != null) f.completeExceptionally(t);
            }
        }

        synchronized void close() {
            if (out != null) {
                try { out.onCompleted(); } catch (RuntimeException ignored) { }
                out = null;
            }
            Grpc.shutdown(channel);
        }
    }

    public RemoteExperts(ExpertPlacement placement, int hidden, long timeoutMs) {
        if (!placement.missing().isEmpty()) {
            throw new IllegalArgumentException("no shard holds (layer/expert) " + placement.missing());
        }
        this.placement = placement;
        this.hidden = hidden;
        this.timeoutMs = timeoutMs;
        int S = placement.shards().size();
        links = new Link[S];
        for (int s = 0; s < S; s++) links[s] = new Link(placement.shards().get(s));
        nanos = adders(placement.numLayers());
        calls = adders(placement.numLayers());
        computeMicros = adders(placement.numLayers());
        tokensPerExpert = adders(placement.numLayers() * placement.numExperts());
    }

    private static LongAdder[] adders(int n) {
        LongAdder[] a = new LongAdder[n];
        for (int i = 0; i < n; i++) a[i] = new LongAdder();
        return a;
    }

    @Override
    public void run(int layer, float[] x, int n, int k, int[] experts, float[] weights, float[] out) {
        long t0 = System.nanoTime();
        int S = links.length;
        String traceparent = MeshTelemetry.traceparent(Context.current());
        // per shard: the rows with at least one slot there ([S][n]), and those slots (others -1)
        int[] rows = new int[S * n];
        int[] rowCount = new int[S];
        for (int t = 0; t < n; t++) {
            for (int s = 0; s < S; s++) {
                boolean any = false;
                for (int j = 0; j < k && !any; j++) any = placement.shardOf(layer, experts[t * k + j]) == s;
                if (any) rows[s * n + rowCount[s]++] = t;
            }
            for (int j = 0; j < k; j++) tokensPerExpert[layer * placement.numExperts() + experts[t * k + j]].increment();
        }
        @SuppressWarnings("unchecked")
        CompletableFuture<ExpertResult>[] pending = new CompletableFuture[S];
        long[] ids = new long[S];
        for (int s = 0; s < S; s++) {
            int m = rowCount[s];
            if (m == 0) continue;
            // the hidden rows, little-endian fp32, written straight into the message's bytes
            ByteBuffer xs = ByteBuffer.allocate(m * hidden * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
            ids[s] = callIds.incrementAndGet();
            ExpertBatch.Builder b = ExpertBatch.newBuilder().setCallId(ids[s]).setLayer(layer)
                    .setNumTokens(m).setTopK(k).setDtype(ActivationDType.ACTIVATION_DTYPE_F32).setTraceparent(traceparent);
            for (int i = 0; i < m; i++) {
                int t = rows[s * n + i];
                xs.asFloatBuffer().position(i * hidden).put(x, t * hidden, hidden);
                for (int j = 0; j < k; j++) {
                    int e = experts[t * k + j];
                    b.addExperts(placement.shardOf(layer, e) == s ? e : -1);
                    b.addWeights(weights[t * k + j]);
                }
            }
            b.setHidden(com.google.protobuf.UnsafeByteOperations.unsafeWrap(xs.array()));
            pending[s] = new CompletableFuture<>();
            links[s].send(b.build(), pending[s]);
        }
        java.util.Arrays.fill(out, 0, n * hidden, 0f);
        long slowestCompute = 0;
        for (int s = 0; s < S; s++) {
            if (pending[s] == null) continue;
            ExpertResult r = await(s, layer, ids[s], pending[s]);
            slowestCompute = Math.max(slowestCompute, r.getComputeUs());
            int m = rowCount[s];
            if (r.getNumTokens() != m || r.getCombined().size() != m * hidden * Float.BYTES) {
                throw new IllegalStateException("expert shard " + links[s].shard.id() + " answered " + r.getNumTokens() + " rows for " + m);
            }
            java.nio.FloatBuffer part = r.getCombined().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
            for (int i = 0; i < m; i++) {
                int o = rows[s * n + i] * hidden, p = i * hidden;
                for (int c = 0; c < hidden; c++) out[o + c] += part.get(p + c);
            }
        }
        nanos[layer].add(System.nanoTime() - t0);
        computeMicros[layer].add(slowestCompute);
        calls[layer].increment();
    }

    private ExpertResult await(int s, int layer, long id, CompletableFuture<ExpertResult> f) {
        ExpertPlacement.Shard shard = links[s].shard;
        try {
            return f.get(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted waiting for expert shard " + shard.id(), e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("expert shard " + shard.id() + " at " + shard.address() + " failed on layer " + layer
                    + ": " + e.getCause().getMessage(), e.getCause());
        } catch (TimeoutException e) {
            links[s].pending.remove(id);
            throw new IllegalStateException("expert shard " + shard.id() + " at " + shard.address() + " did not answer layer " + layer
                    + " within " + timeoutMs + " ms", e);
        }
    }

    /** Mean microseconds of one expert call (all shards, round trip) for each layer; NaN where none was made. */
    public double[] meanCallMicrosPerLayer() {
        double[] m = new double[nanos.length];
        for (int l = 0; l < m.length; l++) {
            long c = calls[l].sum();
            m[l] = c == 0 ? Double.NaN : nanos[l].sum() / 1e3 / c;
        }
        return m;
    }

    /** Mean microseconds per call of the slowest shard's own compute, per layer: round trip minus this is transport. */
    public double[] meanComputeMicrosPerLayer() {
        double[] m = new double[nanos.length];
        for (int l = 0; l < m.length; l++) {
            long c = calls[l].sum();
            m[l] = c == 0 ? Double.NaN : (double) computeMicros[l].sum() / c;
        }
        return m;
    }

    /** Tokens routed to (layer, expert) so far: [layer * numExperts + expert]. */
    public long[] tokensPerExpert() {
        long[] t = new long[tokensPerExpert.length];
        for (int i = 0; i < t.length; i++) t[i] = tokensPerExpert[i].sum();
        return t;
    }

    public void resetStats() {
        for (LongAdder a : nanos) a.reset();
        for (LongAdder a : calls) a.reset();
        for (LongAdder a : computeMicros) a.reset();
    }

    public ExpertPlacement placement() { return placement; }

    @Override
    public void close() {
        for (Link l : links) l.close();
    }
}
