package io.lightmesh.router.app;

import io.lightmesh.mesh.MeshTls;
import org.eclipse.microprofile.config.spi.ConfigSource;

import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * The router's public ports under the mesh's TLS ({@link MeshTls}): its gRPC server requests a client certificate but
 * does not require one (outside clients have no mesh certificate; the API key authenticates them, the workers present
 * theirs), and its HTTP port (OpenAI API, health) serves HTTPS only, with the same certificate, on
 * {@code lightmesh.http-port}. Above mesh-common's TlsConfigSource, below application.properties.
 */
public final class RouterTlsConfigSource implements ConfigSource {
    private final Map<String, String> values;

    public RouterTlsConfigSource() { this(MeshTls.fromEnvironment()); }

    RouterTlsConfigSource(Optional<MeshTls> tls) {
        this.values = tls.map(t -> Map.of(
                "quarkus.grpc.server.ssl.client-auth", "REQUEST",
                "quarkus.http.ssl.certificate.files", t.cert().toString(),
                "quarkus.http.ssl.certificate.key-files", t.key().toString(),
                "quarkus.http.ssl-port", "${lightmesh.http-port:8080}",
                "quarkus.http.test-ssl-port", "0",
                "quarkus.http.insecure-requests", "disabled")).orElse(Map.of());
    }

    @Override public Set<String> getPropertyNames() { return values.keySet(); }
    @Override public Map<String, String> getProperties() { return values; }
    @Override public String getValue(String name) { return values.get(name); }
    @Override public String getName() { return "lightmesh-router-tls"; }
    @Override public int getOrdinal() { return 160; }
}
