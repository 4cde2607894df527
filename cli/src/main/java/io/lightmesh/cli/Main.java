package io.lightmesh.cli;

import io.lightmesh.launcher.UsageException;
import picocli.CommandLine;

import java.io.IOException;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.util.Map;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * {@code ./lightmesh}: the command-line entry point. Command lines are parsed by picocli: {@code --help} on every
 * command, the nearest command or option suggested on a typo, exit code 2 for a wrong command line (with a message
 * on stderr), 1 for a failure, 0 for success.
 */
public final class Main {
    /** Loggers held so that their levels stick: libraries that say at INFO what a user of the tool need not read. */
    private static final Logger[] QUIET = {Logger.getLogger("org.apache.kafka"), Logger.getLogger("kafka"), Logger.getLogger("io.netty"),
            Logger.getLogger("io.vertx"), Logger.getLogger("io.grpc")};

    private Main() {}

    public static void main(String[] argv) {
        for (Logger l : QUIET) if (System.getProperty("java.util.logging.config.file") == null) l.setLevel(Level.WARNING);
        int code = run(argv, System.out, System.err);
        System.out.flush();
        System.exit(code);
    }

    /** Runs one command line; returns its exit code. */
    public static int run(String[] argv, PrintStream out, PrintStream err) {
        CommandLine cl = commandLine(out, err);
        return cl.execute(argv);
    }

    static CommandLine commandLine(PrintStream out, PrintStream err) {
        CommandLine cl = new CommandLine(new LightMeshCommand(out));
        for (Map.Entry<String, String> f : LightMeshCommand.FORWARDED.entrySet()) {
            CommandLine sub = new CommandLine(new ForwardCommand(f.getKey()));
            sub.getCommandSpec().usageMessage().description(f.getValue());
            sub.setUnmatchedOptionsArePositionalParams(true);
            cl.addSubcommand(f.getKey(), sub);
        }
        cl.setOut(new PrintWriter(out, true)).setErr(new PrintWriter(err, true));
        cl.setParameterExceptionHandler((e, args) -> {
            PrintWriter w = e.getCommandLine().getErr();
            String where = e.getCommandLine().getCommandSpec().qualifiedName();
            boolean unknownCommand = e instanceof CommandLine.UnmatchedArgumentException u && u.getCommandLine().getParent() == null
                    && !u.getUnmatched().isEmpty() && !u.getUnmatched().getFirst().startsWith("-");
            w.println(where + ": " + (unknownCommand
                    ? "unknown command '" + ((CommandLine.UnmatchedArgumentException) e).getUnmatched().getFirst() + "'" : e.getMessage()));
            CommandLine.UnmatchedArgumentException.printSuggestions(e, w); // "Did you mean: ..." on a typo
            w.println("run '" + where + " --help' for usage");
            return 2;
        });
        cl.setExecutionExceptionHandler((e, c, parsed) -> {
            PrintWriter w = c.getErr();
            String where = c.getCommandSpec().qualifiedName();
            if (e instanceof UsageException u) {
                if (u.helpShown()) return 0;
                w.println("lightmesh " + u.getMessage());
                return u.exitCode();
            }
            if (e instanceof io.lightmesh.cli.UsageException u) {
                w.println(where + ": " + u.getMessage());
                w.println("run '" + where + " --help' for usage");
                return 2;
            }
            if (e instanceof IllegalArgumentException || e instanceof IOException || e instanceof IllegalStateException) {
                w.println(where + ": error: " + e.getMessage());
                return 1;
            }
            throw e;
        });
        return cl;
    }
}
