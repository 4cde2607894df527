package io.lightmesh.mesh;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;

/** Ports for the services a test starts on loopback. */
public final class FreePort {
    private FreePort() {}

    /** A port nothing listens on now (another process may take it before the service binds it: rare, not excluded). */
    public static int next() {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
