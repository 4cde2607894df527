package io.lightmesh.mesh;

import org.eclipse.microprofile.config.spi.ConfigSource;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * The mesh's TLS settings ({@link MeshTls}: {@code LIGHTMESH_TLS_CERT}, {@code _KEY}, {@code _CA} or the
 * {@code -Dlightmesh.tls.*} properties) as the Quarkus gRPC server's: with them, a service's gRPC server presents its
 * certificate and requires a client certificate of the mesh's CA (the router's public server only requests one, see
 * {@code RouterTlsConfigSource}); its own channels to other services are made by {@link Grpc}, which reads the same
 * settings. Quarkus's separate gRPC server takes no PEM trust, so the CA is written to a PKCS#12 trust store in a
 * temporary file for the life of the process. Nothing is set without the settings (plaintext, as before).
 *
 * <p>Registered in META-INF/services; below application.properties, so a {@code quarkus.grpc.server.ssl.*} key set
 * there or in the environment wins.
 */
public final class TlsConfigSource implements ConfigSource {
    static final int ORDINAL = 150;
    private final Map<String, String> values;

    public TlsConfigSource() { this(MeshTls.fromEnvironment()); }

    TlsConfigSource(Optional<MeshTls> tls) { this.values = tls.map(TlsConfigSource::grpcServer).orElse(Map.of()); }

    static Map<String, String> grpcServer(MeshTls t) {
        try {
            String password = HexFormat.of().formatHex(new SecureRandom().generateSeed(12));
            Path store = Files.createTempFile("lightmesh-ca-", ".p12");
            store.toFile().deleteOnExit();
            t.writeTrustStore(store, password.toCharArray());
            Map<String, String> m = new HashMap<>();
            m.put("quarkus.grpc.server.plain-text", "false");
            m.put("quarkus.grpc.server.ssl.certificate", t.cert().toString());
            m.put("quarkus.grpc.server.ssl.key", t.key().toString());
            m.put("quarkus.grpc.server.ssl.trust-store", store.toString());
            m.put("quarkus.grpc.server.ssl.trust-store-type", "pkcs12");
            m.put("quarkus.grpc.server.ssl.trust-store-password", password);
            m.put("quarkus.grpc.server.ssl.client-auth", "REQUIRED");
            return Map.copyOf(m);
        } catch (IOException e) {
            throw new UncheckedIOException("TLS: cannot write the CA trust store: " + e.getMessage(), e);
        }
    }

    @Override public Set<String> getPropertyNames() { return values.keySet(); }
    @Override public Map<String, String> getProperties() { return values; }
    @Override public String getValue(String name) { return values.get(name); }
    @Override public String getName() { return "lightmesh-tls"; }
    @Override public int getOrdinal() { return ORDINAL; }
}
