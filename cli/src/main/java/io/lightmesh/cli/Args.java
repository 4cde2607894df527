package io.lightmesh.cli;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** Parsed {@code --flag value} / {@code --switch} arguments of one subcommand; unknown flags are errors. */
final class Args {
    private final Map<String, List<String>> values = new HashMap<>();
    private final Set<String> switches;

    /**
     * @param valued   flags that take a value
     * @param switches flags that take none
     */
    Args(String[] argv, int from, Set<String> valued, Set<String> switches) {
        this.switches = switches;
        for (int i = from; i < argv.length; i++) {
            String a = argv[i];
            String name = a, value = null;
            int eq = a.indexOf('=');
            if (a.startsWith("--") && eq > 0) { name = a.substring(0, eq); value = a.substring(eq + 1); }
            if (switches.contains(name) && value == null) {
                values.computeIfAbsent(name, k -> new ArrayList<>()).add("true");
            } else if (valued.contains(name)) {
                if (value == null) {
                    if (i + 1 >= argv.length) throw new UsageException(name + " needs a value");
                    value = argv[++i];
                }
                values.computeIfAbsent(name, k -> new ArrayList<>()).add(value);
            } else {
                throw new UsageException("unknown option " + a);
            }
        }
    }

    boolean has(String name) { return values.containsKey(name); }

    boolean flag(String name) { return switches.contains(name) && values.containsKey(name); }

    String get(String name, String dflt) {
        List<String> v = values.get(name);
        return v == null ? dflt : v.getLast();
    }

    List<String> all(String name) { return values.getOrDefault(name, List.of()); }

    String required(String name) {
        String v = get(name, null);
        if (v == null) throw new UsageException(name + " is required");
        return v;
    }

    int getInt(String name, int dflt) {
        String v = get(name, null);
        if (v == null) return dflt;
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException(name + ": not an integer: " + v);
        }
    }

    long getLong(String name, long dflt) {
        String v = get(name, null);
        if (v == null) return dflt;
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException(name + ": not an integer: " + v);
        }
    }

    float getFloat(String name, float dflt) {
        String v = get(name, null);
        if (v == null) return dflt;
        try {
            return Float.parseFloat(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException(name + ": not a number: " + v);
        }
    }

    /** A comma-separated list of integers, e.g. {@code --ids 1,2,3}. */
    int[] ints(String name) {
        String v = required(name);
        if (v.isBlank()) return new int[0];
        String[] parts = v.split(",");
        int[] out = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            try {
                out[i] = Integer.parseInt(parts[i].trim());
            } catch (NumberFormatException e) {
                throw new UsageException(name + ": not a comma-separated list of integers: " + v);
            }
        }
        return out;
    }

    /** A wrong command line: reported with the usage and exit code 2. */
    static final class UsageException extends RuntimeException {
        UsageException(String message) { super(message); }
    }
}
