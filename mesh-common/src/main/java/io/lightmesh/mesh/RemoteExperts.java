package io.lightmesh.mesh;

import com.google.common.util.concurrent.ListenableFuture;
import io.grpc.ManagedChannel;
import io.lightmesh.engine.model.ExpertExecutor;
import io.lightmesh.proto.v1.ActivationDType;
import io.lightmesh.proto.v1.ExpertBatch;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.ExpertResult;

import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * The MoE experts of a layer computed by expert shards over gRPC. Per call, the rows routed to each shard are
 * packed into one {@link ExpertBatch} (slots held elsewhere marked -1), the shards are called in parallel, and
 * their partial sums are added. Safe for concurrent calls. Records the round-trip time per layer.
 */
public final class RemoteExperts implements ExpertExecutor, AutoCloseable {
    private final ExpertPlacement placement;
    private final int hidden;
    private final ManagedChannel[] channels;
    private final ExpertGrpc.ExpertFutureStub[] stubs;
    private final AtomicLong callIds = new AtomicLong();
    private final long timeoutMs;
    /** Per layer: nanoseconds spent in run() and number of calls, for the benchmark and metrics. */
    private final LongAdder[] nanos, calls, computeMicros;
    /** Per layer and expert: tokens routed (the "tokens per expert per layer" metric). */
    private final LongAdder[] tokensPerExpert;

    public RemoteExperts(ExpertPlacement placement, int hidden, long timeoutMs) {
        if (!placement.missing().isEmpty()) {
            throw new IllegalArgumentException("no shard holds (layer/expert) " + placement.missing());
        }
        this.placement = placement;
        this.hidden = hidden;
        this.timeoutMs = timeoutMs;
        int S = placement.shards().size();
        channels = new ManagedChannel[S];
        stubs = new ExpertGrpc.ExpertFutureStub[S];
        for (int s = 0; s < S; s++) {
            channels[s] = Grpc.channel(placement.shards().get(s).address());
            stubs[s] = ExpertGrpc.newFutureStub(channels[s]);
        }
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
        int S = stubs.length;
        // per shard: the rows with at least one slot there, and those slots (others -1)
        int[][] rows = new int[S][n];
        int[] rowCount = new int[S];
        for (int t = 0; t < n; t++) {
            for (int s = 0; s < S; s++) {
                boolean any = false;
                for (int j = 0; j < k && !any; j++) any = placement.shardOf(layer, experts[t * k + j]) == s;
                if (any) rows[s][rowCount[s]++] = t;
            }
            for (int j = 0; j < k; j++) tokensPerExpert[layer * placement.numExperts() + experts[t * k + j]].increment();
        }
        @SuppressWarnings("unchecked")
        ListenableFuture<ExpertResult>[] pending = new ListenableFuture[S];
        for (int s = 0; s < S; s++) {
            int m = rowCount[s];
            if (m == 0) continue;
            float[] xs = new float[m * hidden];
            ExpertBatch.Builder b = ExpertBatch.newBuilder().setCallId(callIds.incrementAndGet()).setLayer(layer)
                    .setNumTokens(m).setTopK(k).setDtype(ActivationDType.ACTIVATION_DTYPE_F32);
            for (int i = 0; i < m; i++) {
                int t = rows[s][i];
                System.arraycopy(x, t * hidden, xs, i * hidden, hidden);
                for (int j = 0; j < k; j++) {
                    int e = experts[t * k + j];
                    b.addExperts(placement.shardOf(layer, e) == s ? e : -1);
                    b.addWeights(weights[t * k + j]);
                }
            }
            b.setHidden(Floats.toBytes(xs, 0, m * hidden));
            pending[s] = stubs[s].withDeadlineAfter(timeoutMs, TimeUnit.MILLISECONDS).compute(b.build());
        }
        java.util.Arrays.fill(out, 0, n * hidden, 0f);
        float[] part = new float[0];
        long slowestCompute = 0;
        for (int s = 0; s < S; s++) {
            if (pending[s] == null) continue;
            ExpertResult r;
            try {
                r = pending[s].get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted waiting for expert shard " + placement.shards().get(s).id(), e);
            } catch (ExecutionException e) {
                throw new IllegalStateException("expert shard " + placement.shards().get(s).id() + " at "
                        + placement.shards().get(s).address() + " failed on layer " + layer + ": " + e.getCause().getMessage(), e.getCause());
            }
            slowestCompute = Math.max(slowestCompute, r.getComputeUs());
            int m = rowCount[s];
            if (part.length < m * hidden) part = new float[m * hidden];
            Floats.fromBytes(r.getCombined(), part, 0, m * hidden);
            for (int i = 0; i < m; i++) {
                int o = rows[s][i] * hidden, p = i * hidden;
                for (int c = 0; c < hidden; c++) out[o + c] += part[p + c];
            }
        }
        nanos[layer].add(System.nanoTime() - t0);
        computeMicros[layer].add(slowestCompute);
        calls[layer].increment();
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
        for (ManagedChannel c : channels) Grpc.shutdown(c);
    }
}
