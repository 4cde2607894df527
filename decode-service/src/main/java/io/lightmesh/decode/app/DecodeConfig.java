package io.lightmesh.decode.app;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * The decode worker's settings: keys {@code lightmesh.*} (application.properties, {@code -Dlightmesh.*}, or
 * {@code LIGHTMESH_*} in the environment), the same names as the launcher's flags.
 */
@ConfigMapping(prefix = "lightmesh")
public interface DecodeConfig {
    /** Checkpoint directory. */
    Path model();

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

    @WithDefault("decode-0")
    String id();

    @WithDefault("0.0.0.0")
    String host();

    /** StateTransfer, Decode and Worker gRPC services. */
    @WithDefault("9100")
    int grpcPort();

    /** /q/health. */
    @WithDefault("8081")
    int httpPort();

    /** The address the router is given; default: this host's name and the gRPC port. */
    Optional<String> advertise();

    /** Sequence state budget in GiB (a state is charged at position + max_new_tokens). */
    @WithDefault("8")
    double budgetGib();

    /** Most sequences per decode step. */
    @WithDefault("32")
    int maxBatch();

    /** How long a router's Generate call waits for its state. */
    @WithDefault("120000")
    long stateWaitMs();

    /** Engine backend: auto, reference, vector, opencl. */
    @WithDefault("auto")
    String backend();
}
