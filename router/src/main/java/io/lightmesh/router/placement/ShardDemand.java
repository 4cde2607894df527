package io.lightmesh.router.placement;

/**
 * How many shards the measured load needs: {@code ceil(total load / (capacity per shard * target utilisation))},
 * clamped to [min, max]. {@code capacity} is what one shard computes per second when always busy (tokens per
 * second of compute, measured); unknown (NaN, no compute seen yet) keeps {@code current}; no load at all needs {@code min}.
 */
public record ShardDemand(double targetUtilisation, int min, int max) {
    public ShardDemand {
        if (!(targetUtilisation > 0 && targetUtilisation <= 1)) throw new IllegalArgumentException("target utilisation must be in (0, 1], got " + targetUtilisation);
        if (min < 1 || max < min) throw new IllegalArgumentException("shard range must be 1 <= min <= max, got " + min + ":" + max);
    }

    public int desired(double totalLoad, double capacity, int current) {
        int n;
        if (totalLoad <= 0) n = min;
        else if (Double.isNaN(capacity) || capacity <= 0) n = current;
        else n = (int) Math.min(Integer.MAX_VALUE, Math.ceil(totalLoad / (capacity * targetUtilisation)));
        return Math.max(min, Math.min(max, n));
    }

    /** "MIN:MAX" as given on the command line. */
    public static int[] parseRange(String s) {
        String[] p = s.trim().split(":");
        try {
            if (p.length == 2) {
                int min = Integer.parseInt(p[0].trim()), max = Integer.parseInt(p[1].trim());
                if (min >= 1 && max >= min) return new int[]{min, max};
            }
        } catch (NumberFormatException ignored) {
            // the message below
        }
        throw new IllegalArgumentException("expected MIN:MAX with 1 <= MIN <= MAX (e.g. 2:4), got '" + s + "'");
    }
}
