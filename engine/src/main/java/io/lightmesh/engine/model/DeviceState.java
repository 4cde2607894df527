package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.config.ModelConfig;

/**
 * The device copy of one {@link SequenceState}: a lightning state S [H, D, D] per lightning layer (in a slot of a
 * {@link StatePool}, or in buffers of its own without one) and K, V [capacity, KV*D] per softmax layer, grown by
 * doubling on the device. {@link SequenceState} decides when it is
 * uploaded or downloaded; this class only moves the bytes. It holds no reference to its SequenceState, so a
 * {@link java.lang.ref.Cleaner} can release it when the state is dropped.
 */
final class DeviceState implements AutoCloseable {
    private static final int MIN_KV_CAPACITY = 256;

    final DeviceOps ops;
    final StatePool pool;            // null: the lightning states are buffers of this state's own
    private final int slot;          // the pool slot, or -1
    private final int kvd;           // KV * D
    private final Buffer[] lightning; // [layer] -> [H, D, D], null for softmax layers
    private final Buffer[] keys;      // [layer] -> [capacity, KV*D], null for lightning layers
    private final Buffer[] values;
    private final int[] kvLength;
    private final int[] kvCapacity;
    private final boolean[] softmax;  // [layer]

    DeviceState(DeviceOps ops, StatePool pool, ModelConfig c) {
        this.ops = ops;
        this.pool = pool;
        this.slot = pool == null ? -1 : pool.acquire();
        int L = c.numLayers();
        this.kvd = c.kvDim();
        lightning = new Buffer[L];
        keys = new Buffer[L];
        values = new Buffer[L];
        kvLength = new int[L];
        kvCapacity = new int[L];
        softmax = new boolean[L];
        for (int l = 0; l < L; l++) softmax[l] = c.isSoftmax(l);
        try {
            for (int l = 0; l < L; l++) {
                if (!c.isSoftmax(l) && pool == null) lightning[l] = ops.floats((long) c.numHeads() * c.headDim() * c.headDim());
            }
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** Layer {@code layer}'s state S [H, D, D] (from the pool: a view for this use only). */
    Buffer lightning(int layer) { return pool != null ? pool.state(slot, layer) : lightning[layer]; }

    /** The pool slot of the lightning states, or -1 without a pool. */
    int slot() { return slot; }

    /** Whether layer {@code layer} is a lightning layer (else softmax, with a KV cache). */
    private boolean isLightning(int layer) { return !softmax[layer]; }
    Buffer keys(int layer) { return keys[layer]; }
    Buffer values(int layer) { return values[layer]; }
    int kvLength(int layer) { return kvLength[layer]; }

    /** Host arrays to device: every lightning state and the valid KV rows. */
    void upload(float[][] hostLightning, KvCache[] hostKv) {
        for (int l = 0; l < lightning.length; l++) {
            if (isLightning(l)) {
                ops.write(lightning(l), 0, hostLightning[l], 0, hostLightning[l].length);
            } else {
                KvCache c = hostKv[l];
                int n = c.length();
                reserve(l, n);
                ops.write(keys[l], 0, c.keys(), 0, n * kvd);
                ops.write(values[l], 0, c.values(), 0, n * kvd);
                kvLength[l] = n;
            }
        }
    }

    /** Every lightning state zeroed on the device, without a transfer (a fresh sequence; its KV caches are empty). */
    void zeroLightning() {
        for (int l = 0; l < lightning.length; l++) {
            if (isLightning(l)) {
                Buffer s = lightning(l);
                ops.zero(s, 0, s.length());
            }
        }
    }

    /** Device to host arrays: every lightning state and the valid KV rows. */
    void download(float[][] hostLightning, KvCache[] hostKv) {
        for (int l = 0; l < lightning.length; l++) {
            if (isLightning(l)) {
                ops.read(lightning(l), 0, hostLightning[l], 0, hostLightning[l].length);
            } else {
                KvCache c = hostKv[l];
                int n = kvLength[l];
                c.setLength(n);
                ops.read(keys[l], 0, c.keys(), 0, n * kvd);
                ops.read(values[l], 0, c.values(), 0, n * kvd);
            }
        }
    }

    /** The lightning states alone, device to {@code into} [layer] -> [H, D, D] (null entries skipped). */
    void downloadLightning(float[][] into) {
        for (int l = 0; l < lightning.length; l++) {
            if (isLightning(l) && into[l] != null) ops.read(lightning(l), 0, into[l], 0, into[l].length);
        }
    }

    /**
     * Appends one K and V row, taken from row {@code row} of k, v [rows, KV*D], to layer {@code layer}'s cache;
     * returns the new length.
     */
    int append(int layer, Buffer k, Buffer v, int row) {
        return appendRows(layer, k, v, row, 1);
    }

    /**
     * Appends {@code n} K and V rows, rows {@code from..from+n-1} of k, v [rows, KV*D] (all of a prefill chunk's), to
     * layer {@code layer}'s cache; returns the new length.
     */
    int appendRows(int layer, Buffer k, Buffer v, int from, int n) {
        int len = kvLength[layer];
        reserve(layer, len + n);
        ops.copy(k, (long) from * kvd, keys[layer], (long) len * kvd, (long) n * kvd);
        ops.copy(v, (long) from * kvd, values[layer], (long) len * kvd, (long) n * kvd);
        return kvLength[layer] = len + n;
    }

    /**
     * Room for one more row in layer {@code layer}'s cache, counted as written (the fused decode step writes it on the
     * device, at row {@link #kvLength} before this call); returns the new length.
     */
    int reserveRow(int layer) {
        int len = kvLength[layer];
        reserve(layer, len + 1);
        return kvLength[layer] = len + 1;
    }

    /** Room for {@code rows} rows in layer {@code layer}'s cache, keeping the valid ones. */
    private void reserve(int layer, int rows) {
        if (rows <= kvCapacity[layer] && keys[layer] != null) return;
        int cap = Math.max(MIN_KV_CAPACITY, Math.max(rows, 2 * kvCapacity[layer]));
        Buffer k = ops.floats((long) cap * kvd), v = ops.floats((long) cap * kvd);
        if (keys[layer] != null) {
            ops.copy(keys[layer], 0, k, 0, (long) kvLength[layer] * kvd);
            ops.copy(values[layer], 0, v, 0, (long) kvLength[layer] * kvd);
            keys[layer].close();
            values[layer].close();
        }
        keys[layer] = k;
        values[layer] = v;
        kvCapacity[layer] = cap;
    }

    @Override
    public void close() {
        if (pool != null && slot >= 0) pool.release(slot);
        for (Buffer[] bs : new Buffer[][]{lightning, keys, values}) {
            for (int l = 0; l < bs.length; l++) {
                if (bs[l] != null) bs[l].close();
                bs[l] = null;
            }
        }
    }
}
