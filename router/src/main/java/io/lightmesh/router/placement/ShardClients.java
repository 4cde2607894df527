package io.lightmesh.router.placement;

import io.grpc.ManagedChannel;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.LoadExpertsRequest;
import io.lightmesh.proto.v1.ShardHoldings;
import io.lightmesh.proto.v1.UnloadExpertsRequest;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * The controller's calls to expert shards, one channel per address, each call with a deadline (a shard that does
 * not answer in time counts as unreachable). Failures surface as grpc's StatusRuntimeException.
 */
final class ShardClients implements AutoCloseable {
    private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    private final long rpcTimeoutMs;

    ShardClients(long rpcTimeoutMs) { this.rpcTimeoutMs = rpcTimeoutMs; }

    private ManagedChannel channel(String address) { return channels.computeIfAbsent(address, Grpc::channel); }

    WorkerInfo describe(String address, long timeoutMs) {
        return describe(address, timeoutMs, DescribeRequest.getDefaultInstance());
    }

    /** A Describe carrying {@code request}'s fields (the controller's heartbeat). */
    WorkerInfo describe(String address, long timeoutMs, DescribeRequest request) {
        return WorkerGrpc.newBlockingStub(channel(address)).withDeadlineAfter(timeoutMs, TimeUnit.MILLISECONDS).describe(request);
    }

    ShardHoldings load(String address, int[][] experts, long version) {
        return ExpertGrpc.newBlockingStub(channel(address)).withDeadlineAfter(rpcTimeoutMs, TimeUnit.MILLISECONDS)
                .loadExperts(LoadExpertsRequest.newBuilder().addAllExperts(Layout.toLayerExperts(experts)).setPlacementVersion(version).build());
    }

    /** @param drainMs how long the shard waits for batches in flight on the pairs (the call's deadline allows for it) */
    ShardHoldings unload(String address, int[][] experts, long version, long drainMs) {
        return ExpertGrpc.newBlockingStub(channel(address)).withDeadlineAfter(rpcTimeoutMs + drainMs, TimeUnit.MILLISECONDS)
                .unloadExperts(UnloadExpertsRequest.newBuilder().addAllExperts(Layout.toLayerExperts(experts))
                        .setPlacementVersion(version).setDrainTimeoutMs(drainMs).build());
    }

    /** Closes the channel of a shard gone for good. */
    void forget(String address) { Grpc.shutdown(channels.remove(address)); }

    @Override
    public void close() {
        for (ManagedChannel c : channels.values()) Grpc.shutdown(c);
        channels.clear();
    }
}
