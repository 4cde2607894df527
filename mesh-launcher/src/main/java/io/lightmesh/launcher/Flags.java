package io.lightmesh.launcher;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Command-line flags of a service, each with an environment fallback: {@code --max-batch 32} or
 * {@code LIGHTMESH_MAX_BATCH=32} (the flag wins). Unknown flags fail with the list of known ones.
 */
final class Flags {
    private final Map<String, String> values = new HashMap<>();
    private final Set<String> known;
    private final String command;

    Flags(String command, String[] args, int from, String... known) {
        this.command = command;
        this.known = new TreeSet<>(Arrays.asList(known));
        for (int i = from; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) throw new IllegalArgumentException(command + ": unexpected argument '" + a + "'");
            String name = a.substring(2), value;
            int eq = name.indexOf('=');
            if (eq >= 0) { value = name.substring(eq + 1); name = name.substring(0, eq); }
            else if (i + 1 < args.length) value = args[++i];
            else throw new IllegalArgumentException(command + ": --" + name + " needs a value");
            if (!this.known.contains(name)) {
                throw new IllegalArgumentException(command + ": unknown option --" + name + " (known: --" + String.join(", --", this.known) + ")");
            }
            values.put(name, value);
        }
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
        if (v == null) throw new IllegalArgumentException(command + ": --" + name + " (or " + env(name) + ") is required");
        return v;
    }

    int getInt(String name, int fallback) {
        String v = get(name, null);
        try {
            return v == null ? fallback : Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(command + ": --" + name + " must be an integer, got '" + v + "'");
        }
    }

    double getDouble(String name, double fallback) {
        String v = get(name, null);
        try {
            return v == null ? fallback : Double.parseDouble(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(command + ": --" + name + " must be a number, got '" + v + "'");
        }
    }

    /** A comma-separated list; empty when unset. */
    List<String> list(String name) {
        String v = get(name, null);
        List<String> out = new ArrayList<>();
        if (v != null) for (String s : v.split(",")) if (!s.isBlank()) out.add(s.trim());
        return out;
    }
}
