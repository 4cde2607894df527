package io.lightmesh.expert.app;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * The expert shard's settings: keys {@code lightmesh.*} (application.properties, {@code -Dlightmesh.*}, or
 * {@code LIGHTMESH_*} in the environment), the same names as the launcher's flags.
 */
@ConfigMapping(prefix = "lightmesh")
public interface ExpertConfig {
    /** Checkpoint directory. */
    Path model();

    /**
     * I/N: this shard holds the experts e with e % N == I; I >= N makes it a replica of shard I % N (a StatefulSet
     * pod index past the shard count).
     */
    String shard();

    /** Of these layers only (another set of shards must hold the rest); default every layer. */
    Optional<List<Integer>> layers();

    /** Default expert-I. */
    Optional<String> id();

    @WithDefault("0.0.0.0")
    String host();

    /** Expert and Worker gRPC services. */
    @WithDefault("9200")
    int grpcPort();

    /** /q/health. */
    @WithDefault("8083")
    int httpPort();

    /** The address given to the workers; default: this host's name and the gRPC port. */
    Optional<String> advertise();

    /** Engine backend: auto, reference, vector, opencl. */
    @WithDefault("auto")
    String backend();
}
