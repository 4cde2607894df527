package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshTls;
import io.lightmesh.mesh.TestCa;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.WorkerGrpc;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The four Quarkus applications as processes with mutual TLS from PEM files of the test's own CA (as a Kubernetes
 * Secret would mount them, through {@code LIGHTMESH_TLS_*}): the mesh becomes ready and answers over TLS; an outside
 * client needs only to trust the CA on the router's ports (gRPC and HTTPS); a service's port refuses plaintext and a
 * client without a mesh certificate.
 */
class QuarkusTlsTest {
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    static TestCa ca;
    static ServiceProcesses services;
    static int routerGrpc, routerHttp, expertGrpc;

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        SyntheticCheckpoint.write(model, SyntheticCheckpoint.Shape.tiny(), DType.F32, 5, false);
        ca = TestCa.create(dir.resolve("ca"), "lightmesh-test-ca");
        expertGrpc = KraftBroker.freePort();
        int decode = KraftBroker.freePort();
        routerGrpc = KraftBroker.freePort();
        routerHttp = KraftBroker.freePort();
        services = new ServiceProcesses(dir, Map.of()); // the services' own OpenTelemetry settings
        String common = "LIGHTMESH_MODEL=" + model + ";LIGHTMESH_HOST=127.0.0.1";
        app("expert", "expert-service", common + ";LIGHTMESH_SHARD=0/1;LIGHTMESH_GRPC_PORT=" + expertGrpc + ";LIGHTMESH_HTTP_PORT=" + KraftBroker.freePort());
        app("decode", "decode-service", common + ";LIGHTMESH_EXPERTS=127.0.0.1:" + expertGrpc + ";LIGHTMESH_GRPC_PORT=" + decode
                + ";LIGHTMESH_HTTP_PORT=" + KraftBroker.freePort() + ";LIGHTMESH_ADVERTISE=127.0.0.1:" + decode + ";LIGHTMESH_BUDGET_GIB=1");
        app("prefill", "prefill-service", common + ";LIGHTMESH_KAFKA=" + kafka.bootstrapServers() + ";LIGHTMESH_EXPERTS=127.0.0.1:" + expertGrpc
                + ";LIGHTMESH_HTTP_PORT=" + KraftBroker.freePort());
        app("router", "router", common + ";LIGHTMESH_KAFKA=" + kafka.bootstrapServers() + ";LIGHTMESH_DECODE=127.0.0.1:" + decode
                + ";LIGHTMESH_EXPERTS=127.0.0.1:" + expertGrpc + ";LIGHTMESH_GRPC_PORT=" + routerGrpc + ";LIGHTMESH_HTTP_PORT=" + routerHttp
                + ";LIGHTMESH_POLL_MS=300");
        services.awaitReady("router over HTTPS", () -> https("/q/health/ready", null), 180_000);
    }

    /** Starts a service's application with its own certificate of the test CA, settings as "KEY=value;..." variables. */
    static void app(String name, String module, String env) throws Exception {
        MeshTls t = ca.issue(name);
        Map<String, String> vars = new HashMap<>(Map.of("LIGHTMESH_TLS_CERT", t.cert().toString(), "LIGHTMESH_TLS_KEY", t.key().toString(),
                "LIGHTMESH_TLS_CA", t.ca().toString()));
        for (String kv : env.split(";")) vars.put(kv.substring(0, kv.indexOf('=')), kv.substring(kv.indexOf('=') + 1));
        services.quarkusApp(name, module, vars);
    }

    /** GET (body null) or POST over HTTPS to the router, trusting only the test CA; null when it does not answer. */
    static HttpResponse<String> https(String path, String body) throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream in = Files.newInputStream(ca.caFile())) { trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in)); }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ssl = SSLContext.getInstance("TLS");
        ssl.init(null, tmf.getTrustManagers(), null);
        HttpRequest.Builder r = HttpRequest.newBuilder(URI.create("https://localhost:" + routerHttp + path));
        if (body != null) r.header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        try {
            return HttpClient.newBuilder().sslContext(ssl).build().send(r.build(), HttpResponse.BodyHandlers.ofString());
        } catch (IOException notYet) {
            return null;
        }
    }

    @AfterAll
    static void stop() throws Exception {
        if (services != null) services.close("quarkus-tls-logs");
    }

    @Test
    void anOutsideClientTrustingTheCaGetsTokensOverGrpcAndHttps() throws Exception {
        var trustOnly = GrpcSslContexts.forClient().trustManager(ca.caFile().toFile()).build();
        ManagedChannel ch = NettyChannelBuilder.forTarget("localhost:" + routerGrpc).sslContext(trustOnly).build();
        try {
            GenerateResponse r = InferenceGrpc.newBlockingStub(ch).withDeadlineAfter(120, TimeUnit.SECONDS).generate(GenerateRequest.newBuilder()
                    .setTokenIds(io.lightmesh.proto.v1.TokenIds.newBuilder().addAllIds(List.of(1, 2, 3))).setReturnTokenIds(true)
                    .setSampling(SamplingParams.newBuilder().setTemperature(0).setMaxNewTokens(6)).build());
            assertEquals(6, r.getTokenIdsCount(), r.toString());
        } finally {
            Grpc.shutdown(ch);
        }
        HttpResponse<String> c = https("/v1/completions", "{\"model\": \"model\", \"prompt\": [1, 2, 3], \"max_tokens\": 4, \"temperature\": 0}");
        assertEquals(200, c.statusCode(), c.body());
        assertTrue(c.body().contains("\"completion_tokens\""), c.body());
    }

    @Test
    void aServicesPortRefusesPlaintextAndClientsWithoutAMeshCertificate() throws Exception {
        ManagedChannel plain = NettyChannelBuilder.forTarget("127.0.0.1:" + expertGrpc).usePlaintext().build();
        var trustOnly = GrpcSslContexts.forClient().trustManager(ca.caFile().toFile()).build();
        ManagedChannel anonymous = NettyChannelBuilder.forTarget("localhost:" + expertGrpc).sslContext(trustOnly).build();
        try {
            for (ManagedChannel ch : List.of(plain, anonymous)) {
                StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> WorkerGrpc.newBlockingStub(ch)
                        .withDeadlineAfter(10, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance()));
                assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.toString());
            }
        } finally {
            Grpc.shutdown(plain);
            Grpc.shutdown(anonymous);
        }
        // and a peer with a certificate of the mesh CA is served
        Grpc.useTls(ca.issue("probe"));
        ManagedChannel peer = Grpc.channel("127.0.0.1:" + expertGrpc);
        try {
            assertFalse(WorkerGrpc.newBlockingStub(peer).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .describe(DescribeRequest.getDefaultInstance()).getWorkerId().isEmpty());
        } finally {
            Grpc.shutdown(peer);
            Grpc.useTls(null);
        }
    }
}
