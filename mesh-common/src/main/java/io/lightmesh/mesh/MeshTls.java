package io.lightmesh.mesh;

import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.netty.handler.ssl.ClientAuth;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContext;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContextBuilder;

import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedTrustManager;
import javax.net.ssl.X509TrustManager;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.function.Function;

/**
 * Mutual TLS between the mesh's services: every service holds a certificate (chain) and key signed by the mesh's CA,
 * presents it on every call it makes, and accepts only peers whose certificate chains to that CA. All three come from
 * PEM files, so a Kubernetes Secret (cert-manager's {@code tls.crt}, {@code tls.key}, {@code ca.crt}) mounts straight
 * in.
 *
 * <p>Settings (a system property, else the environment variable): {@code lightmesh.tls.cert} /
 * {@code LIGHTMESH_TLS_CERT}, {@code lightmesh.tls.key} / {@code LIGHTMESH_TLS_KEY} (PKCS#8, unencrypted),
 * {@code lightmesh.tls.ca} / {@code LIGHTMESH_TLS_CA}; all three or none. {@code lightmesh.tls.verify-hostname}
 * (default false): peers inside the mesh are reached by pod IP through headless Services, which certificates rarely
 * name, so by default a peer is trusted for its chain to the mesh CA (the CA is the trust boundary, as in service
 * meshes); true adds the usual host-name check.
 */
public record MeshTls(Path cert, Path key, Path ca, boolean verifyHostname) {
    public static final String CERT = "lightmesh.tls.cert", KEY = "lightmesh.tls.key", CA = "lightmesh.tls.ca",
            VERIFY_HOSTNAME = "lightmesh.tls.verify-hostname";

    public MeshTls {
        requireReadable(CERT, cert);
        requireReadable(KEY, key);
        requireReadable(CA, ca);
    }

    private static void requireReadable(String name, Path file) {
        if (file == null) throw new IllegalArgumentException(name + " is not set (TLS needs " + CERT + ", " + KEY + " and " + CA + ")");
        if (!Files.isReadable(file)) throw new IllegalArgumentException(name + ": cannot read " + file);
    }

    /** From system properties, else {@code LIGHTMESH_TLS_*} variables; empty when none of the three is set. */
    public static Optional<MeshTls> fromEnvironment() {
        return fromSettings(name -> {
            String v = System.getProperty(name);
            if (v == null || v.isBlank()) v = System.getenv(name.toUpperCase(Locale.ROOT).replace('.', '_').replace('-', '_'));
            return v == null || v.isBlank() ? null : v.trim();
        });
    }

    /** From a lookup of the {@code lightmesh.tls.*} keys (null: not set); refuses a partial set, naming what is missing. */
    public static Optional<MeshTls> fromSettings(Function<String, String> get) {
        String cert = get.apply(CERT), key = get.apply(KEY), ca = get.apply(CA);
        if (cert == null && key == null && ca == null) return Optional.empty();
        return Optional.of(new MeshTls(cert == null ? null : Path.of(cert), key == null ? null : Path.of(key),
                ca == null ? null : Path.of(ca), Boolean.parseBoolean(String.valueOf(get.apply(VERIFY_HOSTNAME)))));
    }

    /** What a service presents when it calls another, and how it checks the callee. */
    public SslContext clientContext() {
        try {
            SslContextBuilder b = GrpcSslContexts.forClient().keyManager(cert.toFile(), key.toFile());
            return (verifyHostname ? b.trustManager(ca.toFile()) : b.trustManager(chainOnly(caTrustManager()))).build();
        } catch (IOException | GeneralSecurityException e) {
            throw new IllegalArgumentException("TLS client settings (" + cert + ", " + key + ", " + ca + "): " + e.getMessage(), e);
        }
    }

    /**
     * What a service's gRPC server presents.
     *
     * @param clientAuth REQUIRE between services; OPTIONAL on the router's public port, where outside clients have no
     *                   mesh certificate (they authenticate with the API key)
     */
    public SslContext serverContext(ClientAuth clientAuth) {
        try {
            return GrpcSslContexts.configure(SslContextBuilder.forServer(cert.toFile(), key.toFile()))
                    .trustManager(ca.toFile()).clientAuth(clientAuth).build();
        } catch (IOException | RuntimeException e) {
            throw new IllegalArgumentException("TLS server settings (" + cert + ", " + key + ", " + ca + "): " + e.getMessage(), e);
        }
    }

    /** The CA certificates as a PKCS#12 trust store (for servers that take no PEM trust: Quarkus's gRPC server). */
    public void writeTrustStore(Path file, char[] password) throws IOException {
        try {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            int i = 0;
            for (X509Certificate c : caCertificates()) ks.setCertificateEntry("lightmesh-ca-" + i++, c);
            try (OutputStream out = Files.newOutputStream(file)) { ks.store(out, password); }
        } catch (GeneralSecurityException e) {
            throw new IOException("cannot write a trust store from " + ca + ": " + e.getMessage(), e);
        }
    }

    List<X509Certificate> caCertificates() throws IOException, CertificateException {
        try (InputStream in = Files.newInputStream(ca)) {
            Collection<? extends java.security.cert.Certificate> cs = CertificateFactory.getInstance("X.509").generateCertificates(in);
            List<X509Certificate> out = new ArrayList<>();
            for (var c : cs) out.add((X509Certificate) c);
            if (out.isEmpty()) throw new CertificateException("no certificate in " + ca);
            return out;
        }
    }

    private X509TrustManager caTrustManager() throws IOException, GeneralSecurityException {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        ks.load(null, null);
        int i = 0;
        for (X509Certificate c : caCertificates()) ks.setCertificateEntry("ca-" + i++, c);
        TrustManagerFactory f = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        f.init(ks);
        for (TrustManager t : f.getTrustManagers()) if (t instanceof X509TrustManager x) return x;
        throw new GeneralSecurityException("no X509 trust manager");
    }

    /**
     * Checks the peer's chain against the CA and nothing else: the two-argument checks of a PKIX trust manager do no
     * endpoint identification, and as an X509ExtendedTrustManager this one is not wrapped by the JDK in one that does.
     */
    private static X509ExtendedTrustManager chainOnly(X509TrustManager pkix) {
        return new X509ExtendedTrustManager() {
            @Override public void checkClientTrusted(X509Certificate[] chain, String authType) throws CertificateException { pkix.checkClientTrusted(chain, authType); }
            @Override public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException { pkix.checkServerTrusted(chain, authType); }
            @Override public void checkClientTrusted(X509Certificate[] chain, String authType, Socket s) throws CertificateException { pkix.checkClientTrusted(chain, authType); }
            @Override public void checkServerTrusted(X509Certificate[] chain, String authType, Socket s) throws CertificateException { pkix.checkServerTrusted(chain, authType); }
            @Override public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine e) throws CertificateException { pkix.checkClientTrusted(chain, authType); }
            @Override public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine e) throws CertificateException { pkix.checkServerTrusted(chain, authType); }
            @Override public X509Certificate[] getAcceptedIssuers() { return pkix.getAcceptedIssuers(); }
        };
    }
}
