package io.lightmesh.router.placement;

import io.grpc.Server;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.ExpertShardInfo;
import io.lightmesh.proto.v1.LayerExperts;
import io.lightmesh.proto.v1.LoadExpertsRequest;
import io.lightmesh.proto.v1.ShardHoldings;
import io.lightmesh.proto.v1.UnloadExpertsRequest;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.lightmesh.proto.v1.WorkerKind;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Stand-ins for expert shards, for the controller's unit tests only (the mesh tests use real ExpertShards): each
 * serves Worker.Describe and Expert.LoadExperts / UnloadExperts over real gRPC on loopback, as the contract says
 * (slot capacity, idempotent, RESOURCE_EXHAUSTED when full), and counts the tokens a test "computes" on it.
 * {@link #drive} plays a load: tokens per (layer, expert) split over the shards holding it, as workers would.
 */
final class FakeShards implements AutoCloseable {
    static final String FINGERPRINT = "fp-test";

    final int numLayers, numExperts;
    final List<Shard> shards = new CopyOnWriteArrayList<>();

    FakeShards(int numLayers, int numExperts) {
        this.numLayers = numLayers;
        this.numExperts = numExperts;
    }

    final class Shard {
        final String id;
        final int capacity;
        final List<TreeSet<Integer>> held = new ArrayList<>();
        final long[] tokens = new long[numLayers * numExperts];
        long computeUs, tokensComputed, version;
        final List<String> calls = new CopyOnWriteArrayList<>(); // "load 0/3", "unload 1/2"
        final io.lightmesh.mesh.ControllerSightings controllers = new io.lightmesh.mesh.ControllerSightings();
        /** Each Describe answers this late (a slow or hung shard whose connection stays open); 0: at once. */
        volatile long describeDelayMs;
        Server server;
        String address;

        Shard(String id, int capacity, int[] experts) {
            this.id = id;
            this.capacity = capacity;
            for (int l = 0; l < numLayers; l++) {
                TreeSet<Integer> s = new TreeSet<>();
                for (int e : experts) s.add(e);
                held.add(s);
            }
        }

        synchronized int used() { return held.stream().mapToInt(TreeSet::size).sum(); }

        synchronized boolean holds(int l, int e) { return held.get(l).contains(e); }

        synchronized List<LayerExperts> heldProto() {
            List<LayerExperts> out = new ArrayList<>();
            for (int l = 0; l < numLayers; l++) if (!held.get(l).isEmpty()) out.add(LayerExperts.newBuilder().setLayer(l).addAllExperts(held.get(l)).build());
            return out;
        }

        synchronized void compute(int l, int e, long n, long us) {
            if (!held.get(l).contains(e)) throw new IllegalStateException(id + " does not hold " + l + "/" + e);
            tokens[l * numExperts + e] += n;
            tokensComputed += n;
            computeUs += us;
        }

        synchronized ShardHoldings holdings() {
            return ShardHoldings.newBuilder().setShardId(id).addAllExperts(heldProto()).setSlotCapacity(capacity).setSlotsUsed(used()).setPlacementVersion(version).build();
        }

        void start() throws IOException {
            server = Grpc.serve("127.0.0.1", 0, List.of(new WorkerGrpc.WorkerImplBase() {
                @Override public void describe(DescribeRequest r, StreamObserver<WorkerInfo> out) {
                    if (r.hasController()) controllers.heard(r.getController()); // as ExpertShard: heard on arrival
                    long t0 = System.currentTimeMillis();
                    while (System.currentTimeMillis() - t0 < describeDelayMs) { // re-read: a test ends a hang by setting 0
                        try { Thread.sleep(10); } catch (InterruptedException e) { return; }
                    }
                    synchronized (Shard.this) {
                        ExpertShardInfo.Builder info = ExpertShardInfo.newBuilder().addAllHeld(heldProto()).setSlotCapacity(capacity)
                                .setSlotsUsed(used()).setNumLayers(numLayers).setNumExperts(numExperts).setComputeUs(computeUs)
                                .setTokensComputed(tokensComputed).setPlacementVersion(version).addAllControllers(controllers.report());
                        for (long t : tokens) info.addTokens(t);
                        out.onNext(WorkerInfo.newBuilder().setWorkerId(id).setKind(WorkerKind.WORKER_KIND_EXPERT).setAddress(address)
                                .setModelFingerprint(FINGERPRINT).setExpertShard(info).build());
                    }
                    out.onCompleted();
                }
            }, new ExpertGrpc.ExpertImplBase() {
                @Override public void loadExperts(LoadExpertsRequest r, StreamObserver<ShardHoldings> out) {
                    synchronized (Shard.this) {
                        int extra = 0;
                        for (LayerExperts le : r.getExpertsList()) for (int e : le.getExpertsList()) if (!held.get(le.getLayer()).contains(e)) extra++;
                        if (used() + extra > capacity) {
                            out.onError(Status.RESOURCE_EXHAUSTED.withDescription("full").asRuntimeException());
                            return;
                        }
                        for (LayerExperts le : r.getExpertsList()) for (int e : le.getExpertsList()) {
                            if (held.get(le.getLayer()).add(e)) calls.add("load " + le.getLayer() + "/" + e);
                        }
                        version = Math.max(version, r.getPlacementVersion());
                    }
                    out.onNext(holdings());
                    out.onCompleted();
                }

                @Override public void unloadExperts(UnloadExpertsRequest r, StreamObserver<ShardHoldings> out) {
                    synchronized (Shard.this) {
                        for (LayerExperts le : r.getExpertsList()) for (int e : le.getExpertsList()) {
                            if (held.get(le.getLayer()).remove(e)) calls.add("unload " + le.getLayer() + "/" + e);
                        }
                        version = Math.max(version, r.getPlacementVersion());
                    }
                    out.onNext(holdings());
                    out.onCompleted();
                }
            }));
            address = "127.0.0.1:" + server.getPort();
        }

        void kill() { server.shutdownNow(); }
    }

    /** Starts a shard holding {@code experts} of every layer. */
    Shard add(String id, int capacity, int... experts) throws IOException {
        Shard s = new Shard(id, capacity, experts);
        s.start();
        shards.add(s);
        return s;
    }

    List<String> addresses() { return shards.stream().map(s -> s.address).toList(); }

    /**
     * Computes {@code rate[layer][expert] * seconds} tokens, each pair's tokens split evenly over the live shards
     * holding it; each token costs {@code usPerToken} microseconds of compute. Pairs held by no shard are skipped.
     */
    void drive(double[][] rate, double seconds, double usPerToken) {
        for (int l = 0; l < numLayers; l++) {
            for (int e = 0; e < numExperts; e++) {
                List<Shard> holders = new ArrayList<>();
                for (Shard s : shards) if (!s.server.isShutdown() && s.holds(l, e)) holders.add(s);
                if (holders.isEmpty()) continue;
                long n = Math.round(rate[l][e] * seconds / holders.size());
                for (Shard s : holders) {
                    try { s.compute(l, e, n, Math.round(n * usPerToken)); } catch (IllegalStateException ignored) { /* unloaded meanwhile */ }
                }
            }
        }
    }

    @Override
    public void close() {
        for (Shard s : shards) {
            s.describeDelayMs = 0;
            s.server.shutdownNow();
        }
    }
}
