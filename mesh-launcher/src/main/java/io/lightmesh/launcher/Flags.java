package io.lightmesh.launcher;

import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Command-line flags of a service or benchmark, parsed by picocli, each with an environment fallback:
 * {@code --max-batch 32} or {@code LIGHTMESH_MAX_BATCH=32} (the flag wins). Every flag takes a value ({@code --x v}
 * or {@code --x=v}; the last one given wins). {@code -h} / {@code --help} prints the usage (every flag with its
 * variable) and ends with {@link UsageException#helpShown()}; an unknown flag ends with a {@link UsageException}
 * that names it and suggests the nearest known one.
 */
final class Flags {
    private final Map<String, String> values = new HashMap<>();
    private final Set<String> known;
    private final String command;

    Flags(String command, String[] args, int from, String... known) {
        this(command, null, System.out, args, from, known);
    }

    /**
     * @param description one line for the usage; null: none
     * @param usageOut    where {@code --help} prints the usage
     */
    Flags(String command, String description, PrintStream usageOut, String[] args, int from, String... known) {
        this.command = command;
        this.known = new TreeSet<>(Arrays.asList(known));
        CommandLine cl = new CommandLine(spec(command, description, this.known));
        try {
            CommandLine.ParseResult r = cl.parseArgs(Arrays.copyOfRange(args, from, args.length));
            if (r.isUsageHelpRequested()) {
                cl.usage(usageOut);
                usageOut.flush();
                throw UsageException.afterHelp();
            }
            for (OptionSpec o : r.matchedOptions()) values.put(o.longestName().substring(2), o.getValue());
        } catch (CommandLine.ParameterException e) {
            throw new UsageException(message(command, e));
        }
    }

    /** picocli's description of the command: every flag a string, documented with its environment variable. */
    private static CommandSpec spec(String command, String description, Set<String> known) {
        CommandSpec spec = CommandSpec.create().name("lightmesh " + command);
        if (description != null) spec.usageMessage().description(description);
        spec.usageMessage().footer("", "Each option can also be set in the environment (shown in brackets); the option wins.");
        spec.addOption(OptionSpec.builder("-h", "--help").usageHelp(true).description("Show this help and exit.").build());
        for (String k : known) {
            spec.addOption(OptionSpec.builder("--" + k).type(String.class).paramLabel("<" + k + ">")
                    .description("[" + env(k) + "]").build());
        }
        spec.parser().overwrittenOptionsAllowed(true);
        return spec;
    }

    /** The parse error, the nearest known flag on a typo, and where the usage is. */
    static String message(String command, CommandLine.ParameterException e) {
        StringWriter suggestion = new StringWriter();
        if (e instanceof CommandLine.UnmatchedArgumentException u) {
            CommandLine.UnmatchedArgumentException.printSuggestions(u, new PrintWriter(suggestion, true));
        }
        String s = suggestion.toString().strip();
        return command + ": " + e.getMessage() + (s.isEmpty() ? "" : "\n" + s) + "\nrun 'lightmesh " + command + " --help' for the options";
    }

    /** The flags given on the command line (not those from the environment), by name. */
    Map<String, String> given() { return new java.util.TreeMap<>(values); }

    /** The environment variable of a flag: LIGHTMESH_ + the name in upper case, '-' as '_'. */
    static String env(String name) { return "LIGHTMESH_" + name.toUpperCase(Locale.ROOT).replace('-', '_'); }

    String get(String name, String fallback) {
        if (!known.contains(name)) throw new IllegalStateException("flag --" + name + " not declared for " + command);
        String v = values.get(name);
        if (v == null) v = System.getenv(env(name));
        return v == null || v.isBlank() ? fallback : v;
    }

    String required(String name) {
        String v = get(name, null);
        if (v == null) throw new UsageException(command + ": --" + name + " (or " + env(name) + ") is required");
        return v;
    }

    int getInt(String name, int fallback) {
        String v = get(name, null);
        try {
            return v == null ? fallback : Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException(command + ": --" + name + " must be an integer, got '" + v + "'");
        }
    }

    long getLong(String name, long fallback) {
        String v = get(name, null);
        try {
            return v == null ? fallback : Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException(command + ": --" + name + " must be an integer, got '" + v + "'");
        }
    }

    double getDouble(String name, double fallback) {
        String v = get(name, null);
        try {
            return v == null ? fallback : Double.parseDouble(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException(command + ": --" + name + " must be a number, got '" + v + "'");
        }
    }

    /** true / false (also yes / no, 1 / 0); the fallback when unset. */
    boolean getBoolean(String name, boolean fallback) {
        String v = get(name, null);
        if (v == null) return fallback;
        return switch (v.trim().toLowerCase(Locale.ROOT)) {
            case "true", "yes", "1" -> true;
            case "false", "no", "0" -> false;
            default -> throw new UsageException(command + ": --" + name + " must be true or false, got '" + v + "'");
        };
    }

    /** A comma-separated list; empty when unset. */
    List<String> list(String name) {
        String v = get(name, null);
        List<String> out = new ArrayList<>();
        if (v != null) for (String s : v.split(",")) if (!s.isBlank()) out.add(s.trim());
        return out;
    }

    /** A comma-separated list of integers; the fallback when unset. */
    int[] ints(String name, int[] fallback) {
        List<String> parts = list(name);
        if (parts.isEmpty()) return fallback;
        try {
            return parts.stream().mapToInt(Integer::parseInt).toArray();
        } catch (NumberFormatException e) {
            throw new UsageException(command + ": --" + name + " must be comma-separated integers, got '" + get(name, "") + "'");
        }
    }
}
