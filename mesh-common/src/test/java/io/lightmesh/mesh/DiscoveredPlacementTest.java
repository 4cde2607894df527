package io.lightmesh.mesh;

import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.ExpertAssignment;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.lightmesh.proto.v1.WorkerKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link DiscoveredPlacement}: expert shards behind a name (a headless Service: each shard on its own loopback
 * address, the same port; the name's records changed by the test as an endpoints controller would) are followed as
 * they join and leave, over real gRPC Describe calls: a new complete set is published as a newer version, an
 * incomplete one keeps the last, a reported shard is dropped at once.
 */
class DiscoveredPlacementTest {
    static final String NAME = "experts.llm.svc.cluster.local";
    @TempDir static Path dir;
    static MeshModel model;
    static int port;

    final Map<String, List<String>> records = new ConcurrentHashMap<>();
    final PeerSet.Resolver resolver = name -> {
        List<String> ips = records.get(name);
        if (ips == null || ips.isEmpty()) throw new UnknownHostException(name);
        InetAddress[] a = new InetAddress[ips.size()];
        for (int i = 0; i < a.length; i++) a[i] = InetAddress.getByName(ips.get(i));
        return a;
    };
    final List<Server> servers = new ArrayList<>();
    DiscoveredPlacement source;

    @BeforeAll
    static void model() throws Exception {
        Path m = dir.resolve("model");
        SyntheticCheckpoint.write(m, new SyntheticCheckpoint.Shape(64, 16, 2, 2, 1, 8, 4, 4, 2, 8, 16), DType.F32, 3, false);
        model = MeshModel.load(m, new ReferenceOps());
        try (ServerSocket s = new ServerSocket(0)) { port = s.getLocalPort(); }
    }

    @AfterEach
    void stop() {
        if (source != null) source.close();
        servers.forEach(Server::shutdownNow);
    }

    /** A shard pod: Worker.Describe on its own loopback address, holding these experts of every layer. */
    Server shard(String ip, String id, String fingerprint, int... experts) throws Exception {
        ExpertAssignment.Builder a = ExpertAssignment.newBuilder();
        for (int e : experts) a.addExperts(e);
        WorkerInfo info = WorkerInfo.newBuilder().setWorkerId(id).setKind(WorkerKind.WORKER_KIND_EXPERT).setAddress(ip + ":" + port)
                .setModelFingerprint(fingerprint).setExperts(a).build();
        Server s = NettyServerBuilder.forAddress(new InetSocketAddress(ip, port)).addService(new WorkerGrpc.WorkerImplBase() {
            @Override public void describe(DescribeRequest r, StreamObserver<WorkerInfo> out) {
                out.onNext(info);
                out.onCompleted();
            }
        }).build().start();
        servers.add(s);
        return s;
    }

    ExpertPlacement awaitVersion(long version) throws InterruptedException {
        ExpertPlacement p = source.awaitNewer(version - 1, 15_000);
        assertTrue(p.version() >= version, "no version " + version + " within 15 s: " + p);
        return p;
    }

    static List<String> ids(ExpertPlacement p) { return p.shards().stream().map(ExpertPlacement.Shard::id).sorted().toList(); }

    PeerSet peers() { return PeerSet.of(List.of("dns:" + NAME + ":" + port), resolver, Duration.ofMillis(100)); }

    @Test
    void shardsThatJoinAreUsedAndShardsThatLeaveAreDropped() throws Exception {
        shard("127.0.0.2", "expert-0", model.fingerprint(), 0, 1, 2, 3);
        records.put(NAME, List.of("127.0.0.2"));
        source = DiscoveredPlacement.start(model, peers(), "worker", 10_000, 200);
        assertTrue(source.dynamic());
        assertEquals(1, source.current().version());
        assertEquals(List.of("expert-0"), ids(source.current()));

        // a replica pod becomes ready: the name answers with both, the next version routes over both
        shard("127.0.0.3", "expert-1", model.fingerprint(), 0, 1, 2, 3);
        records.put(NAME, List.of("127.0.0.2", "127.0.0.3"));
        ExpertPlacement two = awaitVersion(2);
        assertEquals(List.of("expert-0", "expert-1"), ids(two));
        assertEquals(2, two.replicas(1, 3).length);

        // the first pod dies while DNS still lists it; a worker reports it: dropped without waiting for DNS
        servers.getFirst().shutdownNow().awaitTermination();
        source.reportUnreachable(two.shards().getFirst(), "UNAVAILABLE", two.version());
        ExpertPlacement three = awaitVersion(3);
        assertEquals(List.of("expert-1"), ids(three));

        // the survivor goes too and half of a replacement set comes: incomplete, the last complete placement stays
        servers.get(1).shutdownNow().awaitTermination();
        shard("127.0.0.4", "expert-2", model.fingerprint(), 0, 2);
        records.put(NAME, List.of("127.0.0.4"));
        assertEquals(3, source.awaitNewer(3, 1_500).version(), "no complete placement: none published");
        // the rest of it: complete again
        shard("127.0.0.5", "expert-3", model.fingerprint(), 1, 3);
        records.put(NAME, List.of("127.0.0.4", "127.0.0.5"));
        ExpertPlacement four = awaitVersion(4);
        assertEquals(List.of("expert-2", "expert-3"), ids(four));
        assertTrue(four.missing().isEmpty());
    }

    @Test
    void aShardOfAnotherModelIsNeverUsed() throws Exception {
        shard("127.0.0.2", "expert-0", model.fingerprint(), 0, 1, 2, 3);
        records.put(NAME, List.of("127.0.0.2"));
        source = DiscoveredPlacement.start(model, peers(), "worker", 10_000, 200);
        shard("127.0.0.3", "stranger", "another-model", 0, 1, 2, 3);
        records.put(NAME, List.of("127.0.0.2", "127.0.0.3"));
        assertEquals(1, source.awaitNewer(1, 1_500).version(), "a shard of another model changes nothing");
        assertEquals(List.of("expert-0"), ids(source.current()));
    }

    @Test
    void noCompleteSetWithinTheWaitFailsTheStartNamingWhatIsMissing() throws Exception {
        shard("127.0.0.2", "expert-0", model.fingerprint(), 0, 1);
        records.put(NAME, List.of("127.0.0.2"));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> DiscoveredPlacement.start(model, peers(), "worker", 1_500, 200));
        assertTrue(e.getMessage().contains("pairs held by no shard") && e.getMessage().contains(NAME), e.getMessage());
    }
}
