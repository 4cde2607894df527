package io.lightmesh.mesh;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.StatusRuntimeException;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.security.KeyStore;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Mutual TLS between services: only peers with a certificate of the mesh's CA get through, both ways. */
class MeshTlsTest {
    @TempDir Path dir;
    private Server server;

    @AfterEach
    void plaintextAgain() {
        Grpc.shutdown(server);
        Grpc.useTls(null);
    }

    private static final class Echo extends WorkerGrpc.WorkerImplBase {
        @Override public void describe(DescribeRequest r, StreamObserver<WorkerInfo> out) {
            out.onNext(WorkerInfo.newBuilder().setWorkerId("echo").build());
            out.onCompleted();
        }
    }

    private static WorkerInfo call(ManagedChannel ch) {
        try {
            return WorkerGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
        } finally {
            Grpc.shutdown(ch);
        }
    }

    @Test
    void servicesWithCertificatesOfTheMeshCaTalk() throws Exception {
        TestCa ca = TestCa.create(dir.resolve("ca"), "lightmesh-test-ca");
        MeshTls serverTls = ca.issue("decode-0");
        Grpc.useTls(serverTls);
        server = Grpc.serve("127.0.0.1", 0, List.of(new Echo()));
        // a different service's certificate of the same CA, reaching the server by IP (no host-name check by default)
        Grpc.useTls(ca.issue("prefill-0"));
        assertEquals("echo", call(Grpc.channel("127.0.0.1:" + server.getPort())).getWorkerId());
        assertEquals("echo", call(Grpc.directChannel("127.0.0.1:" + server.getPort())).getWorkerId());
    }

    @Test
    void aClientWithoutAMeshCertificateIsRefused() throws Exception {
        TestCa ca = TestCa.create(dir.resolve("ca"), "lightmesh-test-ca");
        Grpc.useTls(ca.issue("expert-0"));
        server = Grpc.serve("127.0.0.1", 0, List.of(new Echo()));
        String target = "127.0.0.1:" + server.getPort();

        // plaintext
        StatusRuntimeException plain = assertThrows(StatusRuntimeException.class,
                () -> call(NettyChannelBuilder.forTarget(target).usePlaintext().build()));
        assertEquals(Status.Code.UNAVAILABLE, plain.getStatus().getCode());

        // a certificate of another CA: the server refuses it (and the client refuses the server's)
        TestCa rogue = TestCa.create(dir.resolve("rogue"), "rogue-ca");
        Grpc.useTls(rogue.issue("intruder"));
        StatusRuntimeException other = assertThrows(StatusRuntimeException.class, () -> call(Grpc.channel(target)));
        assertEquals(Status.Code.UNAVAILABLE, other.getStatus().getCode());

        // TLS that trusts the mesh CA but presents no certificate: refused by a service's server (client auth required)
        MeshTls good = ca.issue("client");
        var noCert = io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts.forClient().trustManager(good.ca().toFile()).build();
        StatusRuntimeException anonymous = assertThrows(StatusRuntimeException.class,
                () -> call(NettyChannelBuilder.forTarget(target).overrideAuthority("localhost").sslContext(noCert).build()));
        assertEquals(Status.Code.UNAVAILABLE, anonymous.getStatus().getCode());
    }

    @Test
    void theRoutersPublicPortTakesClientsWithoutCertificates() throws Exception {
        TestCa ca = TestCa.create(dir.resolve("ca"), "lightmesh-test-ca");
        MeshTls routerTls = ca.issue("router");
        Grpc.useTls(routerTls);
        server = Grpc.servePublic("127.0.0.1", 0, List.of(new Echo()));
        var noCert = io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts.forClient().trustManager(routerTls.ca().toFile()).build();
        ManagedChannel ch = NettyChannelBuilder.forTarget("localhost:" + server.getPort()).sslContext(noCert).build();
        assertEquals("echo", call(ch).getWorkerId());
    }

    @Test
    void settingsMustComeAsAWholeAndBeReadable() throws Exception {
        assertTrue(MeshTls.fromSettings(k -> null).isEmpty(), "no TLS keys: plaintext");
        TestCa ca = TestCa.create(dir.resolve("ca"), "ca");
        MeshTls t = ca.issue("x");
        IllegalArgumentException missing = assertThrows(IllegalArgumentException.class, () -> MeshTls.fromSettings(Map.of(
                MeshTls.CERT, t.cert().toString(), MeshTls.KEY, t.key().toString())::get));
        assertTrue(missing.getMessage().contains(MeshTls.CA), missing.getMessage());
        IllegalArgumentException unreadable = assertThrows(IllegalArgumentException.class, () -> MeshTls.fromSettings(Map.of(
                MeshTls.CERT, t.cert().toString(), MeshTls.KEY, dir.resolve("nope.key").toString(), MeshTls.CA, t.ca().toString())::get));
        assertTrue(unreadable.getMessage().contains("nope.key"), unreadable.getMessage());
    }

    @Test
    void theCaBecomesATrustStoreForServersThatTakeNoPem() throws Exception {
        TestCa ca = TestCa.create(dir.resolve("ca"), "ca");
        MeshTls t = ca.issue("x");
        Path store = dir.resolve("trust.p12");
        t.writeTrustStore(store, "changeit".toCharArray());
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (var in = java.nio.file.Files.newInputStream(store)) { ks.load(in, "changeit".toCharArray()); }
        assertEquals(1, ks.size());
        assertTrue(ks.isCertificateEntry(ks.aliases().nextElement()));
    }
}
