package io.lightmesh.engine.bench;

import picocli.CommandLine;

import java.io.PrintStream;
import java.io.PrintWriter;

/**
 * A benchmark's command line, parsed by picocli in the style of {@code ./lightmesh} and the mesh benches: {@code -h} /
 * {@code --help} prints the usage to {@code out} (exit 0); a wrong command line prints
 * {@code "<name>: <why>"}, the nearest known option on a typo and where the usage is to {@code err} (exit 2, as
 * picocli and the CLI do). An option given twice keeps the last value.
 */
final class BenchCommandLine {
    /** Exit code of a wrong command line. */
    static final int USAGE_ERROR = 2;

    /** Options whose values must also fit together: checked after parsing, a {@link CommandLine.ParameterException} if not. */
    interface Checked {
        void check(CommandLine commandLine);
    }

    private BenchCommandLine() {}

    /**
     * Parses {@code args} into {@code options} (a picocli {@code @Command} object) under the command name {@code name}.
     *
     * @return null when the bench should run; otherwise the exit code (0 after --help, {@link #USAGE_ERROR} after a
     *         wrong command line, its message printed to {@code err})
     */
    static Integer parse(String name, Object options, String[] args, PrintStream out, PrintStream err) {
        CommandLine cl = new CommandLine(options).setCommandName(name);
        cl.getCommandSpec().parser().overwrittenOptionsAllowed(true);
        try {
            cl.parseArgs(args);
            if (cl.isUsageHelpRequested()) {
                cl.usage(out);
                out.flush();
                return 0;
            }
            if (options instanceof Checked c) c.check(cl);
            return null;
        } catch (CommandLine.ParameterException e) {
            PrintWriter w = new PrintWriter(err, true);
            w.println(name + ": " + e.getMessage());
            CommandLine.UnmatchedArgumentException.printSuggestions(e, w); // "Did you mean: ..." on a typo
            w.println("run '" + name + " --help' for usage");
            return USAGE_ERROR;
        }
    }

    /** A wrong value found after parsing, reported like picocli's own. */
    static CommandLine.ParameterException wrong(CommandLine cl, String message) {
        return new CommandLine.ParameterException(cl, message);
    }
}
