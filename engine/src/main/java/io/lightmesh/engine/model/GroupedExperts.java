package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.DeviceOps.ExpertSet;
import io.lightmesh.engine.backend.DeviceOps.ExpertWeight;

/**
 * SwiGLU experts of one layer on the device, grouped by expert as {@link LocalExperts} does on the host: the pairs
 * (token, chosen expert) are grouped on the host from the router's ids, and each chosen expert runs once over its
 * rows: gather, W1 and W3 products, SiLU(g) * u, W2 product, scatter into the pairs' rows [n * K, h]. Each expert's
 * weights are read once per call, and the launches are per expert, not per row. Shared by the device prefill
 * ({@link ResidentDecoder}) and expert shards on a device ({@link DeviceExperts}).
 */
final class GroupedExperts {
    private GroupedExperts() {}

    /** Where expert e of the layer lives on the device: a set and the index within it, or null if not held. */
    interface Placement {
        ExpertSet set(int expert);

        int slot(int expert);
    }

    /**
     * Device scratch: groupTokens, groupPairs [>= n*K] ints; xe [m, h], act and up [m, I], de [m, h] floats, m the most
     * pairs one expert takes (n when each row names an expert once, as the router does).
     */
    record Work(Buffer groupTokens, Buffer groupPairs, Buffer xe, Buffer act, Buffer up, Buffer de) {}

    /**
     * pairs[p] = Expert_{ids[p]}(x[p / K]) for every pair p < n * K whose id is >= 0 (pairs of id -1 are skipped and
     * their rows left as they were).
     *
     * @param x     [n, h] on the device
     * @param ids   [n, K] on the host, ids in [-1, E)
     * @param pairs [n * K, h] on the device
     */
    static void run(DeviceOps d, Placement where, int E, int h, int I, Buffer x, int n, int K, int[] ids, Work w,
                    Buffer pairs) {
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
        d.write(w.groupTokens(), tokenRow, start[E]);
        d.write(w.groupPairs(), pairIndex, start[E]);
        for (int e = 0; e < E; e++) {
            int m = start[e + 1] - start[e];
            if (m == 0) continue;
            ExpertSet set = where.set(e);
            if (set == null) throw new IllegalArgumentException("expert " + e + " is not on this device");
            int slot = where.slot(e);
            d.gatherRows(x, h, w.groupTokens(), start[e], m, w.xe());                 // xe [m, h]
            d.expertProduct(set, ExpertWeight.W1, slot, w.xe(), m, w.act());          // g [m, I]
            d.expertProduct(set, ExpertWeight.W3, slot, w.xe(), m, w.up());           // u [m, I]
            d.siluMul(w.act(), w.up(), (long) m * I);
            d.expertProduct(set, ExpertWeight.W2, slot, w.act(), m, w.de());          // [m, h]
            d.scatterRows(w.de(), h, w.groupPairs(), start[e], m, pairs);
        }
    }
}
