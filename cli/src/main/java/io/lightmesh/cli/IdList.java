package io.lightmesh.cli;

/** Comma-separated integers on the command line, e.g. {@code --ids 1,2,3}. */
final class IdList {
    private IdList() {}

    /** @param flag the option's name, for the message */
    static int[] parse(String flag, String v) {
        if (v == null) throw new UsageException(flag + " is required");
        if (v.isBlank()) return new int[0];
        String[] parts = v.split(",");
        int[] out = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            try {
                out[i] = Integer.parseInt(parts[i].trim());
            } catch (NumberFormatException e) {
                throw new UsageException(flag + ": not a comma-separated list of integers: " + v);
            }
        }
        return out;
    }
}
