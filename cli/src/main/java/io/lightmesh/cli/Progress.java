package io.lightmesh.cli;

import java.io.PrintStream;
import java.util.Locale;

/**
 * A one-line progress note on stderr for a step that takes a while (loading a large checkpoint, prefilling a long
 * prompt): {@code lightmesh: <what>... 3.5 s}, rewritten in place every half second and wiped when the step ends.
 * Only for a person watching a terminal: {@code ./lightmesh} sets {@code LIGHTMESH_PROGRESS=1} when stderr is one;
 * redirected output gets nothing. Shown only once the step has taken a second, so quick steps stay silent.
 */
final class Progress implements AutoCloseable {
    private static final long SHOW_AFTER_MS = 1000, EVERY_MS = 500;

    private final Thread ticker;
    private final PrintStream err;
    private volatile boolean shown;

    private Progress(String what, PrintStream err) {
        this.err = err;
        long start = System.nanoTime();
        ticker = Thread.ofPlatform().daemon().name("progress").start(() -> {
            try {
                Thread.sleep(SHOW_AFTER_MS);
                while (!Thread.currentThread().isInterrupted()) {
                    double s = (System.nanoTime() - start) / 1e9;
                    synchronized (this) {
                        // the cursor is left at the line's start ('\r' last): what comes next overwrites the note, and the
                        // stderr filter of ./lightmesh, which passes text on at each '\r' or '\n', shows it at once
                        err.print(String.format(Locale.ROOT, "lightmesh: %s... %.1f s\033[K\r", what, s));
                        err.flush();
                        shown = true;
                    }
                    Thread.sleep(EVERY_MS);
                }
            } catch (InterruptedException done) {
                // the step ended
            }
        });
    }

    /** Whether progress notes are wanted: stderr is a terminal (as ./lightmesh found it). */
    static boolean enabled() { return "1".equals(System.getenv("LIGHTMESH_PROGRESS")); }

    /** A note for {@code what} when enabled, else one that does nothing. */
    static Progress of(String what) { return enabled() ? new Progress(what, System.err) : new Progress(); }

    private Progress() {
        ticker = null;
        err = null;
    }

    /** Ends the note and wipes its line; idempotent. */
    @Override
    public void close() {
        if (ticker == null) return;
        ticker.interrupt();
        try { ticker.join(1000); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        synchronized (this) {
            if (shown) {
                err.print("\033[K\r");
                err.flush();
                shown = false;
            }
        }
    }
}
