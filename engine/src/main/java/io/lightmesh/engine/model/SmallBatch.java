package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.DeviceOps.ExpertSet;

/**
 * A small batch of an expert shard on the device ({@link DeviceExperts}, a decode step's few slots) through the decode
 * path's matrix-vector MoE kernels ({@link DeviceOps#runExperts}): one upload, for each chosen expert one gate-up and
 * one down launch per 8 slots, one read-back.
 *
 * <p>Shape of the one uploaded buffer {@code in}: the slots' rows [capacity, h] first, ordered by expert (so that a
 * run of 8 rows, what one launch reads, holds few experts: each launch reads its expert's weights only when one of
 * its rows is that expert's), then, per chosen expert j, a segment of capacity ids at an offset the device's views
 * allow: ids[r] = 0 where row r is expert j's (the index of that expert in its one-expert set), 1 elsewhere (no expert
 * of the set, so the kernels skip the row). The ids are int32 bits in the float buffer: {@code Float.intBitsToFloat}
 * of 0 and 1 (neither a NaN, so copied bit for bit) - two uploads would be two blocking writes, each a sync.
 * Each slot's row is computed by itself, so the results equal the grouped path's and the in-process decode's.
 * Not thread-safe: its owner calls it under its lock.
 */
final class SmallBatch implements AutoCloseable {
    private static final float OTHER = Float.intBitsToFloat(1); // int32 1: not the set's expert 0
    private final DeviceOps d;
    private final int E, h, capacity, segment;
    private final long idsOff;
    private final Buffer in, act, out;
    private final Buffer[] ids; // [j]: the view of segment j, made on first use
    private final float[] stage, ys;
    private final int[] start, fill, chosen, expertOfRow;
    private int[] rowOf = new int[0]; // [pair p]: the slot row of p (grown to the calls' n * k)

    /** Scratch for up to {@code capacity} slots of a layer of E experts, hidden h, intermediate size inter. */
    SmallBatch(DeviceOps d, int E, int h, int inter, int capacity) {
        this.d = d;
        this.E = E;
        this.h = h;
        this.capacity = capacity;
        long a = d.viewAlignment();
        this.segment = (int) roundUp(capacity, a);
        this.idsOff = roundUp((long) capacity * h, a);
        int segments = Math.min(E, capacity);
        long length = idsOff + (long) segments * segment;
        if (length > Integer.MAX_VALUE) throw new IllegalArgumentException("small batch of " + capacity + " slots is too large");
        this.in = d.floats(length);
        this.act = d.floats((long) capacity * inter);
        this.out = d.floats((long) capacity * h);
        this.ids = new Buffer[segments];
        this.stage = new float[(int) length];
        this.ys = new float[capacity * h];
        this.start = new int[E + 1];
        this.fill = new int[E];
        this.chosen = new int[segments];
        this.expertOfRow = new int[capacity];
    }

    private static long roundUp(long v, long a) { return (v + a - 1) / a * a; }

    /**
     * As {@link DeviceExperts#run} for a call of {@code slots} (<= capacity) non-skipped pairs: out[t] = sum_j
     * w[t*k + j] * Expert_{experts[t*k + j]}(x[t]) (out zeroed by the caller), sets[e] the one-expert set of expert e.
     */
    void run(ExpertSet[] sets, float[] xs, int n, int k, int[] experts, float[] w, int slots, float[] outHost) {
        if (slots > capacity) throw new IllegalArgumentException(slots + " slots, at most " + capacity);
        if (n * k > rowOf.length) rowOf = new int[n * k];
        java.util.Arrays.fill(start, 0);
        for (int p = 0; p < n * k; p++) if (experts[p] >= 0) start[experts[p] + 1]++;
        int D = 0;
        for (int e = 0; e < E; e++) {
            if (start[e + 1] > 0) chosen[D++] = e;
            start[e + 1] += start[e];
        }
        System.arraycopy(start, 0, fill, 0, E);
        for (int p = 0; p < n * k; p++) {
            int e = experts[p];
            if (e < 0) continue;
            int r = fill[e]++;
            rowOf[p] = r;
            expertOfRow[r] = e;
            System.arraycopy(xs, (p / k) * h, stage, r * h, h);
        }
        for (int j = 0; j < D; j++) {
            int o = (int) (idsOff + (long) j * segment), e = chosen[j];
            for (int r = 0; r < slots; r++) stage[o + r] = expertOfRow[r] == e ? 0f : OTHER;
        }
        d.write(in, 0, stage, 0, (int) (idsOff + (long) (D - 1) * segment + slots));
        for (int j = 0; j < D; j++) {
            if (ids[j] == null) ids[j] = d.view(in, idsOff + (long) j * segment, capacity);
            d.runExperts(sets[chosen[j]], in, slots, 1, ids[j], act, out);
        }
        d.read(out, 0, ys, 0, slots * h);
        for (int p = 0; p < n * k; p++) {
            if (experts[p] < 0) continue;
            float g = w[p];
            int o = (p / k) * h, yo = rowOf[p] * h;
            for (int i = 0; i < h; i++) outHost[o + i] += g * ys[yo + i];
        }
    }

    @Override
    public void close() {
        for (Buffer v : ids) if (v != null) v.close();
        in.close();
        act.close();
        out.close();
    }
}
