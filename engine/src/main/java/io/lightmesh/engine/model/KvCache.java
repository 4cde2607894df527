package io.lightmesh.engine.model;

import java.util.Arrays;

/**
 * Keys and values of one softmax layer for one sequence: [T, KV, D] each, fp32, grown by doubling.
 * Rows {@code 0..length-1} are valid (RoPE already applied to keys).
 */
public final class KvCache {
    private final int rowWidth; // KV * D
    private float[] k, v;
    private int length;

    public KvCache(int rowWidth, int initialCapacity) {
        this.rowWidth = rowWidth;
        int n = arrayLength(Math.max(1, initialCapacity));
        this.k = new float[n];
        this.v = new float[n];
    }

    private int arrayLength(long rows) {
        long need = rows * rowWidth;
        if (need > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException("KV cache of " + rows + " tokens x " + rowWidth + " exceeds one array");
        }
        return (int) need;
    }

    /** Appends n rows from keys/values [n, KV*D]. */
    public void append(float[] keys, float[] values, int n) {
        ensureCapacity(length + n);
        System.arraycopy(keys, 0, k, length * rowWidth, n * rowWidth);
        System.arraycopy(values, 0, v, length * rowWidth, n * rowWidth);
        length += n;
    }

    void ensureCapacity(int rows) {
        long need = (long) rows * rowWidth;
        if (need <= k.length) return;
        arrayLength(rows);
        long cap = Math.min(Integer.MAX_VALUE - 8, Math.max(need, (long) k.length * 2));
        cap -= cap % rowWidth;
        k = Arrays.copyOf(k, (int) cap);
        v = Arrays.copyOf(v, (int) cap);
    }

    public float[] keys() { return k; }
    public float[] values() { return v; }
    public int length() { return length; }
    public int rowWidth() { return rowWidth; }

    /** Bytes of the valid rows (what a hand-off ships): 2 x T x KV x D x 4. */
    public long byteSize() { return 2L * length * rowWidth * Float.BYTES; }

    void setLength(int n) {
        ensureCapacity(n);
        length = n;
    }
}
