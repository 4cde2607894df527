package io.lightmesh.router.placement;

import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.Meter;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;

/**
 * The controller's figures as OpenTelemetry gauges, read from its latest {@link PlacementView} at each collection:
 * {@code lightmesh.expert.load} (tokens/s per (layer, expert)), {@code lightmesh.placement.imbalance},
 * {@code lightmesh.placement.version} and {@code lightmesh.expert.shards.desired} (for KEDA / HPA).
 */
final class PlacementMetrics implements AutoCloseable {
    static final AttributeKey<Long> LAYER = AttributeKey.longKey("lightmesh.layer"), EXPERT = AttributeKey.longKey("lightmesh.expert");

    private final List<AutoCloseable> instruments = new ArrayList<>();

    PlacementMetrics(Meter meter, Supplier<PlacementView> view, int numExperts) {
        instruments.add(meter.gaugeBuilder("lightmesh.expert.load").setUnit("{token}/s")
                .setDescription("Tokens per second routed to each (layer, expert) over the placement window")
                .buildWithCallback(m -> {
                    for (PlacementView.ExpertView e : view.get().experts()) {
                        m.record(e.load(), Attributes.of(LAYER, (long) e.layer(), EXPERT, (long) e.expert()));
                    }
                }));
        instruments.add(meter.gaugeBuilder("lightmesh.placement.imbalance").setUnit("1")
                .setDescription("Max / mean expert shard load of the published placement over the window")
                .buildWithCallback(m -> m.record(view.get().imbalance())));
        instruments.add(meter.gaugeBuilder("lightmesh.placement.version").ofLongs().setUnit("1")
                .setDescription("Version of the published expert placement")
                .buildWithCallback(m -> m.record(view.get().version())));
        instruments.add(meter.gaugeBuilder("lightmesh.expert.shards.desired").ofLongs().setUnit("{shard}")
                .setDescription("Expert shards the measured load needs at the target utilisation (clamped to the configured range)")
                .buildWithCallback(m -> m.record(view.get().desiredShards())));
    }

    @Override
    public void close() {
        for (AutoCloseable c : instruments) {
            try { c.close(); } catch (Exception ignored) { }
        }
    }
}
