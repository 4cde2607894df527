package io.lightmesh.router.app;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * The router's settings: keys {@code lightmesh.*} in application.properties, {@code -Dlightmesh.*} or the environment
 * ({@code lightmesh.max-in-flight} = {@code LIGHTMESH_MAX_IN_FLIGHT}), the same names as the launcher's flags.
 * {@code host}, {@code grpc-port} and {@code http-port} feed Quarkus's {@code quarkus.grpc.server.*} and
 * {@code quarkus.http.*} (application.properties).
 */
@ConfigMapping(prefix = "lightmesh")
public interface RouterConfig {
    /** Checkpoint directory (config.json, safetensors, tokenizer.json); the router reads its tokenizer and shape. */
    Path model();

    /** Kafka bootstrap servers. */
    String kafka();

    /**
     * Decode workers: host:port entries, or dns:name:port for every address of a name (a headless Service), resolved
     * again every few seconds (io.lightmesh.mesh.PeerSet).
     */
    List<String> decode();

    /** Expert shards (host:port or dns:name:port, as {@link #decode()}), checked by the readiness probe. */
    Optional<List<String>> experts();

    @WithDefault("0.0.0.0")
    String host();

    /** The public gRPC API (lightmesh.v1.Inference). */
    @WithDefault("9000")
    int grpcPort();

    /** OpenAI API on /v1, health on /q/health. */
    @WithDefault("8080")
    int httpPort();

    /** The request topic, created when missing. */
    @WithDefault("lightmesh.requests.v1")
    String topic();

    @WithDefault("16")
    int partitions();

    /** The prefill workers' consumer group (readiness counts its members). */
    @WithDefault("lightmesh-prefill")
    String prefillGroup();

    /** Admitted requests at most; beyond: RESOURCE_EXHAUSTED. */
    @WithDefault("256")
    int maxInFlight();

    @WithDefault("256")
    int defaultMaxNewTokens();

    @WithDefault("1048576")
    int maxPromptTokens();

    /** Request limits (io.lightmesh.router.RequestLimits; README "Request limits"): beyond one, INVALID_ARGUMENT / HTTP 400. */
    @WithDefault("131072")
    int maxNewTokens();

    @WithDefault("4096")
    int maxMessages();

    @WithDefault("128")
    int maxTools();

    @WithDefault("16")
    int maxStopStrings();

    @WithDefault("1024")
    int maxStopChars();

    /** Times a request is prefilled again on another decode worker after one is lost. */
    @WithDefault("2")
    int maxResumes();

    /** How often workers and Kafka are checked (health, decode choice). */
    @WithDefault("1000")
    long pollMs();

    /** When set, the OpenAI API wants "Authorization: Bearer (key)". */
    Optional<String> apiKey();

    // ---- the expert placement controller (runs when experts are given; workers watch it with lightmesh.placement) ----

    /**
     * Whether the router runs the placement controller over lightmesh.experts (default true). False: the shards are
     * only checked by the readiness probe, and the workers route by what each shard holds (their own discovery);
     * what several router replicas need, since each would run its own controller.
     */
    @WithDefault("true")
    boolean placementController();

    /**
     * Expert copies (one (layer, expert) each) a shard may be given beyond its share (ceil(experts / shards) per layer),
     * for replicas of hot experts, spread evenly over the layers; default two per layer. The shards' own
     * lightmesh.expert-slots bounds what they accept.
     */
    Optional<Integer> expertSlots();

    /** The sliding window of expert load, and how long an imbalance must last before a re-placement, in seconds. */
    @WithDefault("60")
    double rebalanceIntervalS();

    /** Re-place when max / mean shard load stays above this for the window. */
    @WithDefault("1.25")
    double imbalanceThreshold();

    /** MIN:MAX bounds of lightmesh.expert.shards.desired (the metric an autoscaler follows); default 1 and unbounded. */
    Optional<String> autoscaleExperts();

    /** Target utilisation of a shard's measured capacity when computing the shards desired. */
    @WithDefault("0.7")
    double expertTargetUtilisation();

    /**
     * The bound of the placement controller's Describe of a shard that answers in time, in ms. A shard that misses it
     * is slow, not dead: its bound doubles up to lightmesh.placement-describe-max-ms; only a refused connection
     * (UNAVAILABLE) drops a shard at once.
     */
    @WithDefault("2000")
    long placementDescribeMs();

    /** The largest Describe bound a slow shard is given, in ms. */
    @WithDefault("10000")
    long placementDescribeMaxMs();

    /**
     * Polls in a row a shard may miss its bound before it is dropped; even then it is kept while it is the only
     * answering holder of some (layer, expert) pair.
     */
    @WithDefault("3")
    int placementMissesToDrop();
}
