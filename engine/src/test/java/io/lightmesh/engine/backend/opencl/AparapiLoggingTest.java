package io.lightmesh.engine.backend.opencl;

import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Aparapi's configuration must not silence the process's INFO lines (the mesh workers log their path at INFO). */
class AparapiLoggingTest {
    /** A root handler that records what reaches it, at INFO. */
    static final class Recording extends Handler {
        final List<String> messages = new CopyOnWriteArrayList<>();

        Recording() { setLevel(Level.INFO); }

        @Override public void publish(LogRecord r) { if (isLoggable(r)) messages.add(r.getMessage()); }
        @Override public void flush() {}
        @Override public void close() {}
    }

    @Test
    void rootHandlersKeepTheirLevelsWhateverTheActionSets() {
        Recording h = new Recording();
        Logger root = Logger.getLogger("");
        root.addHandler(h);
        try {
            AparapiLogging.keepingRootHandlerLevels(() -> {
                for (Handler x : root.getHandlers()) x.setLevel(Level.WARNING); // what com.aparapi.Config's loading does
            });
            assertEquals(Level.INFO, h.getLevel());
        } finally {
            root.removeHandler(h);
        }
    }

    @Test
    void infoLinesStillReachTheRootHandlersOnceTheOpenClBackendAndAparapiAreLoaded() throws Exception {
        Recording h = new Recording();
        Logger root = Logger.getLogger("");
        root.addHandler(h);
        try {
            // loading the backend class tames Aparapi; loading Aparapi's configuration afterwards changes nothing
            Class.forName(OpenClOps.class.getName(), true, getClass().getClassLoader());
            Class.forName("com.aparapi.Config", true, getClass().getClassLoader());
            Logger.getLogger("io.lightmesh.test").info("decode worker d0: decode device-resident");
            assertTrue(h.messages.contains("decode worker d0: decode device-resident"), "INFO line lost: " + h.messages);
            assertEquals(Level.SEVERE, Logger.getLogger("com.aparapi").getLevel(), "Aparapi's own logger stays quiet");
        } finally {
            root.removeHandler(h);
        }
    }
}
