package io.lightmesh.prefill.app;

import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.Readiness;

import jakarta.enterprise.context.ApplicationScoped;

/**
 * Readiness of the worker itself (model loaded, experts placed, consumer started); Kafka's own readiness check comes
 * from quarkus-kafka-client (quarkus.kafka.health.enabled).
 */
@Readiness
@ApplicationScoped
public class PrefillHealth implements HealthCheck {
    private final PrefillNode node;

    PrefillHealth(PrefillNode node) { this.node = node; }

    @Override
    public HealthCheckResponse call() {
        var b = HealthCheckResponse.named("prefill").up().withData("id", node.id())
                .withData("prefilled", node.worker().prefilled.sum()).withData("busy", node.worker().busy())
                .withData("prefix_cache_bytes", node.worker().prefixCache() == null ? 0 : node.worker().prefixCache().bytes());
        // the engine's path: decode_path, prefill_path, experts, micro_batching, backend
        node.worker().pathData().forEach((k, v) -> {
            if (v instanceof Boolean f) b.withData(k, f);
            else b.withData(k, String.valueOf(v));
        });
        return b.build();
    }
}
