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
     * I/N: this shard starts with the experts e with e % N == I (its share); I >= N makes it a replica of shard I % N
     * (a StatefulSet pod index past the shard count); "none": it starts empty, and a placement controller loads
     * experts onto it (Expert.LoadExperts).
     */
    String shard();

    /**
     * Extra expert copies (one (layer, expert) pair each) the shard may hold beyond its starting share, for
     * replicas of hot experts and for the experts of a failed shard; default: no limit (every pair).
     */
    Optional<Integer> expertSlots();

    /** Memory for expert weights, GiB: caps the copies at this over one copy's bytes; default: no cap. */
    Optional<Double> expertMemoryGib();

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
