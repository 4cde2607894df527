package io.lightmesh.prefill;

import io.lightmesh.engine.prefix.PrefixCache;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.Meter;

import java.util.ArrayList;
import java.util.List;

/**
 * OpenTelemetry instruments of a prefill worker's prefix cache, read from {@link PrefixCache#stats} at each
 * collection, attribute {@code lightmesh.worker}:
 * <ul>
 *   <li>{@code lightmesh.prefix_cache.lookups} / {@code .hits} (counters, {lookup}): requests looked up, and those
 *       that found a snapshot; {@code .hit_ratio} (gauge) is hits / lookups since start;</li>
 *   <li>{@code lightmesh.prefix_cache.prompt_tokens} / {@code .cached_tokens} (counters, {token}): context tokens
 *       looked up, and those restored instead of computed;</li>
 *   <li>{@code lightmesh.prefix_cache.usage} / {@code .limit} (gauges, By): bytes held and the budget;
 *       {@code .snapshots} (gauge) and {@code .evictions} (counter).</li>
 * </ul>
 */
final class PrefixCacheMetrics {
    private PrefixCacheMetrics() {}

    /** Registers the instruments; closing the result removes them. */
    static AutoCloseable register(Meter meter, PrefixCache cache, String workerId) {
        Attributes a = Attributes.builder().put("lightmesh.worker", workerId).build();
        String p = "lightmesh.prefix_cache.";
        List<AutoCloseable> all = new ArrayList<>();
        all.add(meter.counterBuilder(p + "lookups").setUnit("{lookup}").setDescription("Requests looked up in the prefix cache")
                .buildWithCallback(m -> m.record(cache.stats().lookups(), a)));
        all.add(meter.counterBuilder(p + "hits").setUnit("{lookup}").setDescription("Lookups that found a cached prefix")
                .buildWithCallback(m -> m.record(cache.stats().hits(), a)));
        all.add(meter.gaugeBuilder(p + "hit_ratio").setUnit("1").setDescription("Hits / lookups since the worker started")
                .buildWithCallback(m -> m.record(cache.stats().hitRate(), a)));
        all.add(meter.counterBuilder(p + "prompt_tokens").setUnit("{token}").setDescription("Context tokens looked up in the prefix cache")
                .buildWithCallback(m -> m.record(cache.stats().promptTokens(), a)));
        all.add(meter.counterBuilder(p + "cached_tokens").setUnit("{token}").setDescription("Context tokens restored from the prefix cache instead of computed")
                .buildWithCallback(m -> m.record(cache.stats().cachedTokens(), a)));
        all.add(meter.upDownCounterBuilder(p + "usage").setUnit("By").setDescription("Bytes held by the prefix cache (KV rows, lightning snapshots, tokens)")
                .buildWithCallback(m -> m.record(cache.stats().bytes(), a)));
        all.add(meter.upDownCounterBuilder(p + "limit").setUnit("By").setDescription("Byte budget of the prefix cache")
                .buildWithCallback(m -> m.record(cache.stats().budget(), a)));
        all.add(meter.upDownCounterBuilder(p + "snapshots").setUnit("{snapshot}").setDescription("State snapshots held")
                .buildWithCallback(m -> m.record(cache.stats().snapshots(), a)));
        all.add(meter.counterBuilder(p + "evictions").setUnit("{snapshot}").setDescription("Snapshots dropped to stay within the budget")
                .buildWithCallback(m -> m.record(cache.stats().evictions(), a)));
        return () -> { for (AutoCloseable c : all) c.close(); };
    }
}
