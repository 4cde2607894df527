package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.config.ModelConfig;

import java.util.BitSet;

/**
 * The lightning states of many sequences in one device buffer, [slots, lightning layers, stride] with a state S
 * [H, D, D] at the start of each stride: the fused decode step finds every sequence's state of a layer by its slot,
 * in one launch for the whole batch. A {@link DeviceState} holds a slot; everything else (prefill, upload, download)
 * sees its states as views ({@link DeviceOps#view}). Grows by doubling: the contents are copied and the views made
 * anew, so a view is taken for each use ({@link #state}), not kept.
 *
 * <p>Thread safety: synchronized (a {@link java.lang.ref.Cleaner} releases slots from its own thread).
 */
final class StatePool implements AutoCloseable {
    private static final int FIRST_SLOTS = 8;

    final DeviceOps ops;
    private final int[] index;    // [layer] -> its index among the lightning layers, -1 for a softmax layer
    private final int layers;     // lightning layers per slot
    private final long stateLen;  // H * D * D
    private final long stride;    // elements per (slot, layer): stateLen rounded up to the view alignment
    private final BitSet used = new BitSet();
    private Buffer buf;           // [capacity, layers, stride]
    private int capacity;
    private Buffer[][] views;     // [slot][lightning layer], made on first use
    private boolean closed;

    StatePool(DeviceOps ops, ModelConfig c) {
        this.ops = ops;
        index = new int[c.numLayers()];
        int li = 0;
        for (int l = 0; l < index.length; l++) index[l] = c.isSoftmax(l) ? -1 : li++;
        layers = li;
        stateLen = (long) c.numHeads() * c.headDim() * c.headDim();
        long a = Math.max(1, ops.viewAlignment());
        stride = (stateLen + a - 1) / a * a;
    }

    /** A free slot (the pool grows when none is); its states' contents are undefined. */
    synchronized int acquire() {
        if (closed) throw new IllegalStateException("state pool is closed");
        int slot = used.nextClearBit(0);
        if (slot >= capacity) grow(Math.max(FIRST_SLOTS, 2 * capacity));
        used.set(slot);
        return slot;
    }

    /** Gives a slot back; after {@link #close}, the last release frees the buffer. */
    synchronized void release(int slot) {
        if (!used.get(slot)) return;
        used.clear(slot);
        if (views != null) {
            for (int li = 0; li < layers; li++) {
                if (views[slot][li] != null) views[slot][li].close();
                views[slot][li] = null;
            }
        }
        if (closed && used.isEmpty()) free();
    }

    /** Slot {@code slot}'s state of layer {@code layer} (a lightning layer), [H, D, D]: a view, for this use only. */
    synchronized Buffer state(int slot, int layer) {
        int li = index[layer];
        if (li < 0) throw new IllegalArgumentException("layer " + layer + " has no lightning state");
        if (!used.get(slot)) throw new IllegalStateException("slot " + slot + " is not held");
        Buffer v = views[slot][li];
        if (v == null) v = views[slot][li] = ops.view(buf, ((long) slot * layers + li) * stride, stateLen);
        return v;
    }

    /** The whole pool [capacity, layers, stride] (the fused kernels index it). */
    synchronized Buffer buffer() { return buf; }

    /** Layer {@code layer}'s index among the lightning layers of a slot. */
    int lightningIndex(int layer) { return index[layer]; }

    /** Lightning layers per slot. */
    int lightningLayers() { return layers; }

    /** Elements from one (slot, layer) state to the next. */
    long stride() { return stride; }

    /** Slots held (tests). */
    synchronized int held() { return used.cardinality(); }

    private void grow(int slots) {
        Buffer next = ops.floats(Math.max(1, (long) slots * layers * stride));
        if (buf != null) {
            ops.copy(buf, 0, next, 0, (long) capacity * layers * stride);
            closeViews();
            buf.close();
        }
        buf = next;
        capacity = slots;
        views = new Buffer[slots][layers];
    }

    private void closeViews() {
        if (views == null) return;
        for (Buffer[] vs : views) for (Buffer v : vs) if (v != null) v.close();
        views = null;
    }

    private void free() {
        closeViews();
        if (buf != null) buf.close();
        buf = null;
        capacity = 0;
    }

    /** Frees the buffer now if no slot is held, else when the last one is released. */
    @Override
    public synchronized void close() {
        closed = true;
        if (used.isEmpty()) free();
    }
}
