package io.lightmesh.engine.backend.opencl;

import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Keeps Aparapi from silencing the process's log. When {@code com.aparapi.Config} loads, it sets every handler of
 * the root logger to its own level ({@code -Dcom.aparapi.logLevel}, default WARNING), so on the OpenCL backend every
 * INFO line of every other component vanished from then on (the backend chosen, which path each mesh worker runs,
 * the shards' compute): a process-wide side effect of a library's configuration. {@link #tame()} loads that class
 * once, puts the root handlers' levels back, and leaves Aparapi's own logger at SEVERE (it logs class-file attribute
 * warnings at every kernel build). With {@code -Dcom.aparapi.logLevel} set, Aparapi's behaviour is what was asked for
 * and is left alone, as is the Aparapi logger's level under {@code -Djava.util.logging.config.file}.
 */
final class AparapiLogging {
    /** Held so that its level sticks (a logger only weakly referenced can be collected and recreated at INFO). */
    private static final Logger APARAPI_LOG = Logger.getLogger("com.aparapi");

    private AparapiLogging() {}

    /** Loads Aparapi's configuration with the root handlers' levels kept; idempotent. */
    static synchronized void tame() {
        if (System.getProperty("com.aparapi.logLevel") == null) {
            keepingRootHandlerLevels(() -> {
                try {
                    Class.forName("com.aparapi.Config", true, AparapiLogging.class.getClassLoader());
                } catch (ClassNotFoundException e) {
                    throw new OpenClException("Aparapi is not on the class path: " + e.getMessage());
                }
            });
        }
        if (System.getProperty("java.util.logging.config.file") == null) APARAPI_LOG.setLevel(Level.SEVERE);
    }

    /** Runs {@code action}, then gives each handler of the root logger the level it had before. */
    static void keepingRootHandlerLevels(Runnable action) {
        Handler[] handlers = Logger.getLogger("").getHandlers();
        Level[] levels = new Level[handlers.length];
        for (int i = 0; i < handlers.length; i++) levels[i] = handlers[i].getLevel();
        try {
            action.run();
        } finally {
            for (int i = 0; i < handlers.length; i++) handlers[i].setLevel(levels[i]);
        }
    }
}
