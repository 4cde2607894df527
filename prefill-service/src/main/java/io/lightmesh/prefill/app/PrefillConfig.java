package io.lightmesh.prefill.app;

import io.lightmesh.mesh.StateCodec;
import io.lightmesh.prefill.PrefillWorker;
import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * The prefill worker's settings: keys {@code lightmesh.*} (application.properties, {@code -Dlightmesh.*}, or
 * {@code LIGHTMESH_*} in the environment), the same names as the launcher's flags.
 */
@ConfigMapping(prefix = "lightmesh")
public interface PrefillConfig {
    /** Checkpoint directory. */
    Path model();

    /** Kafka bootstrap servers. */
    String kafka();

    /**
     * Expert shards: host:port entries, or dns:name:port for every address of a name (a headless Service), resolved
     * again every few seconds (io.lightmesh.mesh.PeerSet); none: the experts run in this process.
     */
    Optional<List<String>> experts();

    /**
     * The placement controller (host:port of the router's gRPC): when set, the experts are routed by the newest
     * placement it publishes (Placement.Watch) and shards that fail are reported to it; lightmesh.experts is then
     * not needed. Unset: the fixed placement discovered from lightmesh.experts.
     */
    Optional<String> placement();

    /** Kafka client id; default prefill-(pid). */
    Optional<String> id();

    @WithDefault("lightmesh.requests.v1")
    String topic();

    @WithDefault("lightmesh-prefill")
    String prefillGroup();

    /** State transfer chunk size in bytes. */
    @WithDefault("" + StateCodec.DEFAULT_CHUNK_BYTES)
    int chunkBytes();

    /** Batched prefill: the records of one poll are taken while their contexts fit in this many tokens (also the forward-step size). */
    @WithDefault("" + PrefillWorker.Settings.DEFAULT_BATCH_TOKENS)
    int prefillBatchTokens();

    /** Batched prefill: at most this many records a batch (each holds a whole sequence state until it is shipped). */
    @WithDefault("" + PrefillWorker.Settings.DEFAULT_BATCH_MAX)
    int prefillBatchMax();

    @WithDefault("0.0.0.0")
    String host();

    /** /q/health (the prefill worker serves no gRPC: it takes its work from Kafka). */
    @WithDefault("8082")
    int httpPort();

    /**
     * Budget of the worker's prefix cache in GiB (snapshots of prompt states, reused by later requests sharing a
     * prefix); 0 turns it off. Unset: 1 GiB, or a quarter of the heap when that is less.
     */
    Optional<Double> prefixCacheGib();

    /** Engine backend: auto, reference, vector, opencl. */
    @WithDefault("auto")
    String backend();
}
