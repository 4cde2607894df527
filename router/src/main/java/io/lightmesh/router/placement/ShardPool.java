package io.lightmesh.router.placement;

/**
 * Where the controller gets shards from and gives them back to when it scales the pool ({@code ./lightmesh serve
 * --autoscale-experts MIN:MAX}: in-process shards of the embedded mesh). In a cluster nothing implements it: the
 * controller only exports {@code lightmesh.expert.shards.desired} for an autoscaler.
 */
public interface ShardPool {
    /** Starts one more shard, holding no expert yet, and answers its gRPC address (host:port) once it serves. */
    String start() throws Exception;

    /** Stops the shard at {@code address}; the controller calls it only after publishing a placement without it and a grace period. */
    void stop(String address);
}
