package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.DeviceOps.ExpertSet;
import io.lightmesh.engine.backend.DeviceOps.ExpertWeight;

/**
 * SwiGLU experts of one layer on the device, grouped by expert as {@link LocalExperts} does on the host: the pairs
 * (token, chosen expert) are grouped on the host from the router's ids, and each chosen expert's weights are read
 * once per call, not once per row. Two forms ({@link Mode}): by default every chosen expert of a set in one launch per
 * stage ({@link DeviceOps#groupedExperts}: a gate-up launch with SiLU(g) * u in its epilogue, a down launch writing
 * each row into its pair's row), else one expert after another (gather, W1 and W3 products, SiLU(g) * u, W2 product,
 * scatter: six launches an expert). Shared by the device prefill ({@link ResidentDecoder}) and expert shards on a
 * device ({@link DeviceExperts}).
 */
final class GroupedExperts {
    private GroupedExperts() {}

    /**
     * How the chosen experts run: -Dlightmesh.experts.grouped=launch (default), device (launch, grouped on the device
     * where the router's ids are there: a prefill chunk with in-process experts) or per-expert (to compare).
     */
    enum Mode {
        /** Every chosen expert of a set in one launch per stage, where the device has the kernels. */
        LAUNCH,
        /** As LAUNCH, the pairs grouped on the device from the router's ids where they are there (no wait for them). */
        DEVICE,
        /** One expert after another: gather, three products, SiLU(g) * u, scatter. */
        PER_EXPERT;

        /** The setting; an unknown value is an error that names the choices. */
        static Mode configured() {
            String v = System.getProperty("lightmesh.experts.grouped", "launch").trim().toLowerCase(java.util.Locale.ROOT);
            return switch (v) {
                case "launch", "" -> LAUNCH;
                case "device" -> DEVICE;
                case "per-expert" -> PER_EXPERT;
                default -> throw new IllegalArgumentException("-Dlightmesh.experts.grouped=" + v
                        + ": use launch, device or per-expert");
            };
        }
    }

    private static volatile Mode mode = Mode.configured();

    /** The form in use (the setting, unless a test chose another). */
    static Mode mode() { return mode; }

    /** Chooses the form for later calls (tests compare them in one JVM); returns the one before. */
    static Mode mode(Mode m) {
        Mode before = mode;
        mode = m;
        return before;
    }

    /** Where expert e of the layer lives on the device: a set and the index within it, or null if not held. */
    interface Placement {
        ExpertSet set(int expert);

        int slot(int expert);
    }

    /**
     * Device scratch: groupTokens, groupPairs [>= n*K] ints; xe [m, h], up [m, I], de [m, h] floats, m the most
     * pairs one expert takes (n when each row names an expert once, as the router does); act [n*K, I] (the launch form
     * keeps every pair's row; the per-expert form uses its first m rows).
     */
    record Work(Buffer groupTokens, Buffer groupPairs, Buffer xe, Buffer act, Buffer up, Buffer de) {}

    /** As {@link #run(DeviceOps, Placement, int, int, int, Buffer, int, int, int[], Work, Buffer, Mode)} in the configured mode. */
    static void run(DeviceOps d, Placement where, int E, int h, int I, Buffer x, int n, int K, int[] ids, Work w,
                    Buffer pairs) {
        run(d, where, E, h, I, x, n, K, ids, w, pairs, mode);
    }

    /**
     * pairs[p] = Expert_{ids[p]}(x[p / K]) for every pair p < n * K whose id is >= 0 (pairs of id -1 are skipped and
     * their rows left as they were).
     *
     * @param x     [n, h] on the device
     * @param ids   [n, K] on the host, ids in [-1, E)
     * @param pairs [n * K, h] on the device
     * @param mode  {@link Mode#LAUNCH} where the device has the grouped kernels, else per expert
     */
    static void run(DeviceOps d, Placement where, int E, int h, int I, Buffer x, int n, int K, int[] ids, Work w,
                    Buffer pairs, Mode mode) {
        int count = n * K;
        int[] start = new int[E + 1];
        for (int p = 0; p < count; p++) if (ids[p] >= 0) start[ids[p] + 1]++;
        for (int e = 0; e < E; e++) start[e + 1] += start[e];
        int[] fill = java.util.Arrays.copyOf(start, E), tokenRow = new int[count], pairIndex = new int[count];
        for (int p = 0; p < count; p++) {
            if (ids[p] < 0) continue;
            int at = fill[ids[p]]++;
            tokenRow[at] = p / K;
            pairIndex[at] = p;
        }
        for (int e = 0; e < E; e++) {
            if (start[e + 1] > start[e] && where.set(e) == null) {
                throw new IllegalArgumentException("expert " + e + " is not on this device");
            }
        }
        if (mode != Mode.PER_EXPERT && d.groupsExperts()) {
            launches(d, where, E, start, tokenRow, pairIndex, x, w.act(), pairs);
            return;
        }
        d.write(w.groupTokens(), tokenRow, start[E]);
        d.write(w.groupPairs(), pairIndex, start[E]);
        for (int e = 0; e < E; e++) {
            int m = start[e + 1] - start[e];
            if (m == 0) continue;
            ExpertSet set = where.set(e);
            int slot = where.slot(e);
            d.gatherRows(x, h, w.groupTokens(), start[e], m, w.xe());                 // xe [m, h]
            d.expertProduct(set, ExpertWeight.W1, slot, w.xe(), m, w.act());          // g [m, I]
            d.expertProduct(set, ExpertWeight.W3, slot, w.xe(), m, w.up());           // u [m, I]
            d.siluMul(w.act(), w.up(), (long) m * I);
            d.expertProduct(set, ExpertWeight.W2, slot, w.act(), m, w.de());          // [m, h]
            d.scatterRows(w.de(), h, w.groupPairs(), start[e], m, pairs);
        }
    }

    /**
     * pairs[p] = Expert_{ids[p]}(x[p / K]) for a layer's stacked set (expert e at slot e), grouped on the device from
     * the router's ids there, when {@code mode} is {@link Mode#DEVICE} and the device can; returns false (nothing done)
     * otherwise, and the caller brings the ids to the host for {@link #run}.
     */
    static boolean runOnDevice(DeviceOps d, ExpertSet set, Buffer x, int n, int K, Buffer ids, Buffer act, Buffer pairs,
                               Mode mode) {
        if (mode != Mode.DEVICE || !d.groupsExperts()) return false;
        d.groupedExperts(set, ids, n, K, x, act, pairs);
        return true;
    }

    /**
     * The launch form: the chosen experts by set (one {@link DeviceOps#groupedExperts} call per distinct set, in the
     * order of their first expert: one for a layer's stacked set, one per expert for a shard's sets of one).
     */
    private static void launches(DeviceOps d, Placement where, int E, int[] start, int[] tokenRow, int[] pairIndex,
                                 Buffer x, Buffer act, Buffer pairs) {
        boolean[] done = new boolean[E];
        int[] slot = new int[E], first = new int[E], rows = new int[E];
        for (int e = 0; e < E; e++) {
            if (done[e] || start[e + 1] == start[e]) continue;
            ExpertSet set = where.set(e);
            int groups = 0;
            for (int f = e; f < E; f++) {
                if (done[f] || start[f + 1] == start[f] || where.set(f) != set) continue;
                done[f] = true;
                slot[groups] = where.slot(f);
                first[groups] = start[f];
                rows[groups++] = start[f + 1] - start[f];
            }
            d.groupedExperts(set, groups, slot, first, rows, tokenRow, pairIndex, start[E], x, act, pairs);
        }
    }
}
