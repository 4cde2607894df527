package io.lightmesh.mesh;

import java.util.Arrays;

/**
 * One shard's batch round trips over a sliding window of time, for telling a slow replica from the others: the
 * median, over the batches answered in the last {@code windowMs} (at most the newest {@code capacity}), of each
 * batch's round trip per (token, expert) slot. The median, not the mean: one batch that waited for a connection,
 * a JIT compile or a GC pause must not make a replica look slow. Thread-safe.
 */
public final class RoundTripWindow {
    private final long windowNanos;
    private final long[] atNanos;
    private final double[] perSlot;
    private final int[] slots;
    private int next, size;

    public RoundTripWindow(long windowMs, int capacity) {
        if (windowMs <= 0 || capacity <= 0) throw new IllegalArgumentException("window and capacity must be positive");
        this.windowNanos = windowMs * 1_000_000;
        atNanos = new long[capacity];
        perSlot = new double[capacity];
        slots = new int[capacity];
    }

    /** A batch of {@code slotCount} slots answered after {@code roundTripMicros}, at {@code nowNanos} (System.nanoTime). */
    public synchronized void add(long nowNanos, int slotCount, long roundTripMicros) {
        if (slotCount <= 0) return;
        atNanos[next] = nowNanos;
        perSlot[next] = (double) roundTripMicros / slotCount;
        slots[next] = slotCount;
        next = (next + 1) % atNanos.length;
        size = Math.min(size + 1, atNanos.length);
    }

    /**
     * Median microseconds per slot of the batches answered in the window ending at {@code nowNanos}; NaN when
     * they hold fewer than {@code minSlots} slots.
     */
    public synchronized double microsPerSlot(long nowNanos, long minSlots) {
        double[] v = new double[size];
        int n = 0;
        long s = 0;
        for (int i = 0; i < size; i++) {
            if (nowNanos - atNanos[i] < windowNanos && nowNanos - atNanos[i] >= 0) { v[n++] = perSlot[i]; s += slots[i]; }
        }
        if (n == 0 || s < Math.max(1, minSlots)) return Double.NaN;
        Arrays.sort(v, 0, n);
        return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    }
}
