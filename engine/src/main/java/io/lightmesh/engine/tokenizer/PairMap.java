package io.lightmesh.engine.tokenizer;

import java.util.Arrays;

/**
 * Open-addressing map from a BPE pair (left id, right id) to its merge (rank, merged id), both packed into longs so
 * that the ~200K merges of a real vocabulary cost two flat arrays instead of 200K boxed entries.
 */
final class PairMap {
    static final long MISSING = -1L;
    private static final long EMPTY = -1L; // a packed pair of non-negative ids is never negative

    private long[] keys;   // (capacity) packed (left << 32 | right), EMPTY where free
    private long[] values; // (capacity) packed (rank << 32 | merged)
    private int size;
    private int mask;

    PairMap(int expected) {
        int cap = Integer.highestOneBit(Math.max(16, expected * 2 - 1)) << 1;
        keys = new long[cap];
        values = new long[cap];
        Arrays.fill(keys, EMPTY);
        mask = cap - 1;
    }

    static long pair(int left, int right) {
        return ((long) left << 32) | (right & 0xFFFFFFFFL);
    }

    /** Stores the merge unless the pair already has one (the first, lowest-ranked merge wins). */
    void putIfAbsent(int left, int right, int rank, int merged) {
        if (size * 2 >= keys.length) grow();
        long key = pair(left, right);
        int i = slot(key);
        while (keys[i] != EMPTY) {
            if (keys[i] == key) return;
            i = (i + 1) & mask;
        }
        keys[i] = key;
        values[i] = ((long) rank << 32) | (merged & 0xFFFFFFFFL);
        size++;
    }

    /** The packed (rank << 32 | merged) for the pair, or {@link #MISSING}. */
    long get(int left, int right) {
        long key = pair(left, right);
        int i = slot(key);
        while (true) {
            long k = keys[i];
            if (k == key) return values[i];
            if (k == EMPTY) return MISSING;
            i = (i + 1) & mask;
        }
    }

    int size() {
        return size;
    }

    private int slot(long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        return (int) (h ^ (h >>> 29)) & mask;
    }

    private void grow() {
        long[] oldKeys = keys, oldValues = values;
        keys = new long[oldKeys.length * 2];
        values = new long[oldKeys.length * 2];
        Arrays.fill(keys, EMPTY);
        mask = keys.length - 1;
        for (int j = 0; j < oldKeys.length; j++) {
            if (oldKeys[j] == EMPTY) continue;
            int i = slot(oldKeys[j]);
            while (keys[i] != EMPTY) i = (i + 1) & mask;
            keys[i] = oldKeys[j];
            values[i] = oldValues[j];
        }
    }
}
