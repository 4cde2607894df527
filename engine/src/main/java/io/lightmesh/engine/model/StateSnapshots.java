package io.lightmesh.engine.model;

import io.lightmesh.engine.config.ModelConfig;

/**
 * Host copies of the parts of a {@link SequenceState}, and states rebuilt from such copies: what a prefix cache
 * ({@code io.lightmesh.engine.prefix}) takes and gives back. A copy never aliases the state's arrays, so the state
 * may go on (decode, hand-off) after a snapshot was taken, and a restored state owns its arrays.
 */
public final class StateSnapshots {
    private StateSnapshots() {}

    /** Where a restored state's KV rows come from: appends rows 0..position-1 of softmax layer {@code layer}, in order. */
    @FunctionalInterface
    public interface KvRows {
        void appendTo(int layer, KvCache cache);
    }

    /**
     * Copies of every lightning state, current: [layer] -> [H, D, D] fp32, null for softmax layers. A device copy
     * that is ahead is read without bringing the KV caches to the host.
     */
    public static float[][] lightning(SequenceState s) { return s.copyLightning(); }

    /**
     * Rows {@code from..from+n-1} of softmax layer {@code layer}'s keys and values, copied: {keys, values}, each
     * [n, KV*D]. The host is brought up to date first if the device copy is ahead.
     */
    public static float[][] kvRows(SequenceState s, int layer, int from, int n) {
        KvCache c = s.kvCacheForReading(layer);
        if (from < 0 || n < 0 || from + n > c.length()) {
            throw new IllegalArgumentException("KV rows " + from + ".." + (from + n) + " outside 0.." + c.length());
        }
        int w = c.rowWidth();
        float[] k = new float[n * w], v = new float[n * w];
        System.arraycopy(c.keys(), from * w, k, 0, n * w);
        System.arraycopy(c.values(), from * w, v, 0, n * w);
        return new float[][]{k, v};
    }

    /**
     * A fresh host state of {@code position} tokens: {@code lightning} ([layer] -> [H, D, D], as {@link #lightning}
     * gives) copied in, each softmax layer's KV rows appended by {@code kv}, room for {@code spareRows} more rows.
     */
    public static SequenceState restore(ModelConfig c, int position, float[][] lightning, KvRows kv, int spareRows) {
        SequenceState s = new SequenceState(c, position + Math.max(1, spareRows));
        for (int l = 0; l < c.numLayers(); l++) {
            if (c.isSoftmax(l)) {
                KvCache cache = s.kvCache(l);
                kv.appendTo(l, cache);
                if (cache.length() != position) {
                    throw new IllegalStateException("layer " + l + ": " + cache.length() + " KV rows restored for " + position + " tokens");
                }
            } else {
                float[] dst = s.lightningState(l);
                if (lightning[l] == null || lightning[l].length != dst.length) throw new IllegalArgumentException("layer " + l + ": lightning state of the wrong shape");
                System.arraycopy(lightning[l], 0, dst, 0, dst.length);
            }
        }
        s.advance(position);
        return s;
    }
}
