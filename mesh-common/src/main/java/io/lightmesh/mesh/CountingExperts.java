package io.lightmesh.mesh;

import io.lightmesh.engine.model.ExpertExecutor;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.LongCounter;
import io.opentelemetry.api.metrics.Meter;

/**
 * An {@link ExpertExecutor} that counts the tokens routed to each (layer, expert) before handing the call on: the
 * metric {@code lightmesh.moe.tokens} with attributes {@code lightmesh.layer} and {@code lightmesh.expert}, whether
 * the experts run in-process or on shards, on the host's array path ({@link #run}) or the device path (which computes
 * in-process experts itself and tells {@link #routed}). Attribute sets are made once, so a call allocates nothing.
 */
public final class CountingExperts implements ExpertExecutor {
    static final AttributeKey<Long> LAYER = AttributeKey.longKey("lightmesh.layer"), EXPERT = AttributeKey.longKey("lightmesh.expert");

    private final ExpertExecutor inner;
    private final LongCounter tokens;
    private final Attributes[] attributes; // [layer * E + expert]
    private final int numExperts;

    public CountingExperts(ExpertExecutor inner, Meter meter, int numLayers, int numExperts) {
        this.inner = inner;
        this.numExperts = numExperts;
        this.tokens = meter.counterBuilder("lightmesh.moe.tokens").setUnit("{token}")
                .setDescription("Tokens routed to each expert of each MoE layer (a token counts once per chosen expert)").build();
        this.attributes = new Attributes[numLayers * numExperts];
        for (int l = 0; l < numLayers; l++) {
            for (int e = 0; e < numExperts; e++) attributes[l * numExperts + e] = Attributes.of(LAYER, (long) l, EXPERT, (long) e);
        }
    }

    @Override
    public void run(int layer, float[] x, int n, int k, int[] experts, float[] weights, float[] out) {
        routed(layer, experts, n, k);
        inner.run(layer, x, n, k, experts, weights, out);
    }

    /** The call on the pool's thread carries the caller's context (its trace), as a call on the caller's thread does. */
    @Override
    public java.util.concurrent.CompletableFuture<Void> runAsync(int layer, float[] x, int n, int k, int[] experts,
                                                                 float[] weights, float[] out, java.util.concurrent.Executor pool) {
        routed(layer, experts, n, k);
        return inner.runAsync(layer, x, n, k, experts, weights, out, io.opentelemetry.context.Context.current().wrap(pool));
    }

    /** In-process experts stay visible, so the device path computes them itself (and tells {@link #routed}). */
    @Override
    public io.lightmesh.engine.model.LocalExperts local() { return inner.local(); }

    @Override
    public void routed(int layer, int[] experts, int n, int k) {
        for (int i = 0; i < n * k; i++) if (experts[i] >= 0) tokens.add(1, attributes[layer * numExperts + experts[i]]);
    }

    @Override
    public boolean observesRouting() { return true; }

    public ExpertExecutor inner() { return inner; }
}
