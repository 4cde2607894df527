package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.lightmesh.mesh.Grpc;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The embedded mesh a test class runs against. The class starts it in its {@code @BeforeAll} (the options differ
 * from class to class) and hands it to {@link #ready}, which waits for the router's readiness (60 s at most, else the
 * test fails with the router's health) and opens a channel to the router. As a JUnit 5 extension
 * ({@code @RegisterExtension static final TestMesh running = new TestMesh();}, registered after the
 * {@link io.lightmesh.mesh.TestKafka} it uses) it closes the channel, then the mesh, after the class's
 * {@code @AfterAll} methods and before the broker stops.
 */
public final class TestMesh implements AfterAllCallback {
    private EmbeddedMesh mesh;
    private ManagedChannel channel;

    /** {@code started}, once ready, closed with the class; {@link #channel()} reaches its router. */
    public EmbeddedMesh ready(EmbeddedMesh started) throws InterruptedException {
        if (mesh != null) throw new IllegalStateException("a mesh is already running for this class");
        mesh = started;
        assertTrue(started.awaitReady(60_000), () -> "mesh not ready: " + started.router().health());
        channel = Grpc.channel(started.routerTarget());
        return started;
    }

    /** A plaintext channel to the router's gRPC API. */
    public ManagedChannel channel() {
        if (channel == null) throw new IllegalStateException("no mesh is ready");
        return channel;
    }

    @Override
    public void afterAll(ExtensionContext context) {
        Grpc.shutdown(channel);
        if (mesh != null) mesh.close();
        channel = null;
        mesh = null;
    }
}
