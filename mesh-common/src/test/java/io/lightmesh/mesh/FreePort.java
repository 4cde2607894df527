package io.lightmesh.mesh;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/** Ports for the services a test starts on loopback. */
public final class FreePort {
    private FreePort() {}

    private static final Set<Integer> HANDED_OUT = ConcurrentHashMap.newKeySet();

    /**
     * A port nothing listens on now, never one this JVM handed out before (the services a test starts bind their
     * ports seconds later: two of them could otherwise be given the same still-unbound port); another process may
     * still take it before the service binds it: rare, not excluded.
     */
    public static int next() {
        for (int i = 0; i < 100; i++) {
            try (ServerSocket s = new ServerSocket(0)) {
                if (HANDED_OUT.add(s.getLocalPort())) return s.getLocalPort();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        throw new IllegalStateException("no free port not handed out before in 100 tries");
    }
}
