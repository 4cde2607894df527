package io.lightmesh.launcher;

/**
 * A command line that cannot run: its message says why (with picocli's suggestion on a typo) and the process exits
 * with {@link #exitCode()} (2, as picocli and most tools do for usage errors). {@code --help} ends the same way with
 * exit code 0, its usage already printed and no message.
 */
public final class UsageException extends IllegalArgumentException {
    private final int exitCode;

    UsageException(String message) {
        this(message, 2);
    }

    private UsageException(String message, int exitCode) {
        super(message);
        this.exitCode = exitCode;
    }

    /** {@code --help} was given and the usage printed: nothing to run, exit 0. */
    static UsageException afterHelp() { return new UsageException(null, 0); }

    public int exitCode() { return exitCode; }

    /** True when the usage was asked for and printed (exit 0), false for a wrong command line (exit 2). */
    public boolean helpShown() { return exitCode == 0; }
}
