package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.config.ModelConfig;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;
import java.lang.ref.Cleaner;
import java.nio.ByteBuffer;

/**
 * Everything a sequence carries between steps: one lightning state S [H, D, D] (fp32) per lightning layer, one
 * {@link KvCache} per softmax layer, and the number of tokens consumed. This is what prefill hands to decode.
 *
 * <p>On a backend with device-resident operations the state also has a device copy ({@link DeviceState}), and
 * one side may be ahead of the other. The host arrays are the state's serialisable form: every host access
 * ({@link #encoder}, {@link #writeTo}, {@link #byteSize}, and the host forward pass through {@link #lightningState}/{@link #kvCache})
 * first downloads a device copy that is ahead; a device step first uploads host arrays that are ahead. That is the
 * one sync point: a state shipped by the mesh is always complete. {@link #releaseDevice} frees the device copy
 * (after bringing the host up to date); a dropped state's device copy is freed when it is garbage collected.
 *
 * <p>Serialised form: {@link StateLayout}, written a piece at a time by {@link #encoder()} (which downloads a device
 * copy that is ahead first) and read into a state allocated up front by {@link StateDecoder}.
 */
public final class SequenceState {
    private final ModelConfig config;
    private final float[][] lightning; // [layer] -> [H, D, D], null for softmax layers
    private final KvCache[] kv;        // [layer] -> cache, null for lightning layers
    private int position;
    private DeviceState device;   // the device copy, or null
    private boolean deviceAhead;  // the device copy holds steps the host arrays lack
    private boolean hostAhead;    // the host arrays were changed since the device copy was made
    private boolean fresh = true; // nothing consumed and no host array handed out: every lightning state zero, KV empty
    private Cleaner.Cleanable deviceCleanup;

    private static final Cleaner CLEANER = Cleaner.create();

    SequenceState(ModelConfig config, int kvCapacity) {
        this.config = config;
        int L = config.numLayers(), H = config.numHeads(), D = config.headDim();
        lightning = new float[L][];
        kv = new KvCache[L];
        for (int l = 0; l < L; l++) {
            if (config.isSoftmax(l)) kv[l] = new KvCache(config.kvDim(), kvCapacity);
            else lightning[l] = new float[H * D * D];
        }
    }

    /**
     * A fresh host state of {@code position} tokens assembled from parts, sharing no array with them: each lightning
     * layer's S copied from {@code lightning.apply(layer)} ([H, D, D]), each softmax layer's KV rows 0..position-1
     * appended in order by {@code kvRows.accept(cache, layer)}; KV room for {@code kvCapacity} tokens (at least
     * position; the caches grow past it). The one routine behind a fork ({@link StateFork}) and a prefix-cache restore
     * ({@link StateSnapshots#restore}).
     *
     * @throws IllegalArgumentException a lightning part missing or of the wrong shape
     * @throws IllegalStateException    a layer's KV rows not {@code position} after appending
     */
    static SequenceState assemble(ModelConfig c, int position, int kvCapacity, java.util.function.IntFunction<float[]> lightning,
                                  java.util.function.ObjIntConsumer<KvCache> kvRows) {
        SequenceState s = new SequenceState(c, Math.max(kvCapacity, position));
        for (int l = 0; l < c.numLayers(); l++) {
            if (c.isSoftmax(l)) {
                KvCache cache = s.kv[l];
                kvRows.accept(cache, l);
                if (cache.length() != position) {
                    throw new IllegalStateException("layer " + l + ": " + cache.length() + " KV rows for " + position + " tokens");
                }
            } else {
                float[] src = lightning.apply(l), dst = s.lightning[l];
                if (src == null || src.length != dst.length) throw new IllegalArgumentException("layer " + l + ": lightning state of the wrong shape");
                System.arraycopy(src, 0, dst, 0, dst.length);
            }
        }
        s.advance(position);
        s.fresh = false;
        return s;
    }

    /** Tokens consumed so far: the position of the next token. */
    public int position() { return position; }

    void advance(int n) {
        position += n;
        if (n > 0) fresh = false;
    }

    /** Layer {@code layer}'s S on the host, current, for a host forward pass that will change it. */
    float[] lightningState(int layer) {
        fresh = false;
        toHost(true);
        return lightning[layer];
    }

    /** Layer {@code layer}'s KV cache on the host, current, for a host forward pass that will change it. */
    KvCache kvCache(int layer) {
        fresh = false;
        toHost(true);
        return kv[layer];
    }

    /** Layer {@code layer}'s S on the host, current, to be read only (serialisation). */
    float[] lightningStateForReading(int layer) {
        fresh = false; // a StateDecoder fills the arrays it reads
        toHost(false);
        return lightning[layer];
    }

    /** Layer {@code layer}'s KV cache on the host, current, to be read only (serialisation). */
    KvCache kvCacheForReading(int layer) {
        fresh = false;
        toHost(false);
        return kv[layer];
    }

    /**
     * Copies of the lightning states, current, [layer] -> [H, D, D] (null for softmax layers): read from the device copy
     * when it is ahead, without bringing the KV caches to the host (a prefix-cache snapshot mid-prompt).
     */
    synchronized float[][] copyLightning() {
        float[][] out = new float[lightning.length][];
        if (deviceAhead) {
            for (int l = 0; l < out.length; l++) if (lightning[l] != null) out[l] = new float[lightning[l].length];
            device.downloadLightning(out);
        } else {
            for (int l = 0; l < out.length; l++) if (lightning[l] != null) out[l] = lightning[l].clone();
        }
        return out;
    }

    /** Downloads a device copy that is ahead; {@code forWrite}: the caller will change the host arrays. */
    private synchronized void toHost(boolean forWrite) {
        if (deviceAhead) {
            device.download(lightning, kv);
            deviceAhead = false;
        }
        if (forWrite && device != null) hostAhead = true;
    }

    /**
     * The device copy on {@code ops}, current, for a device step that will change it: made and uploaded on first use,
     * re-uploaded when the host arrays are ahead (a host prefill after device decode steps, say). Its lightning
     * states in a slot of {@code pool} (null: buffers of their own).
     */
    synchronized DeviceState onDevice(DeviceOps ops, StatePool pool) {
        if (device != null && (device.ops != ops || device.pool != pool)) { // moved elsewhere: the host takes over first
            toHost(false);
            releaseDevice();
        }
        if (device == null) {
            DeviceState d = new DeviceState(ops, pool, config);
            deviceCleanup = CLEANER.register(this, d::close);
            device = d;
            hostAhead = true;
        }
        if (hostAhead) {
            // a fresh state's zeros made on the device (no blocking write of them) where prefill routes there
            if (fresh && ResidentDecoder.deviceRoute()) device.zeroLightning();
            else device.upload(lightning, kv);
            hostAhead = false;
        }
        deviceAhead = true;
        return device;
    }

    /** Frees the device copy, if any, after bringing the host arrays up to date. */
    public synchronized void releaseDevice() {
        if (device == null) return;
        toHost(false);
        deviceCleanup.clean();
        device = null;
        deviceCleanup = null;
        deviceAhead = hostAhead = false;
    }

    /**
     * Frees the device copy, if any, without bringing the host arrays up to date: for a state that is being thrown
     * away (a finished sequence), where {@link #releaseDevice}'s download would be wasted. The state must not be
     * used afterwards.
     */
    public synchronized void discardDevice() {
        if (device == null) return;
        deviceCleanup.clean();
        device = null;
        deviceCleanup = null;
        deviceAhead = hostAhead = false;
    }

    /** Whether a device copy exists (tests, logs). */
    public synchronized boolean onDevice() { return device != null; }

    public ModelConfig config() { return config; }

    /** Bytes this state holds and a hand-off ships: lightning states plus valid KV rows. */
    public synchronized long byteSize() {
        long b = 0;
        for (int l = 0; l < lightning.length; l++) {
            if (lightning[l] != null) b += (long) lightning[l].length * Float.BYTES;
            else b += deviceAhead ? 2L * device.kvLength(l) * kv[l].rowWidth() * Float.BYTES : kv[l].byteSize();
        }
        return b;
    }

    /** Bytes of memory this state holds: lightning states plus the KV caches at their capacity. */
    public long allocatedBytes() {
        long b = lightningBytes();
        for (KvCache c : kv) if (c != null) b += 2L * c.keys().length * Float.BYTES;
        return b;
    }

    /** Bytes of the lightning states alone: fixed per model, whatever the length. */
    public long lightningBytes() {
        long b = 0;
        for (float[] s : lightning) if (s != null) b += (long) s.length * Float.BYTES;
        return b;
    }

    /** Bytes of the serialised form of a state of {@code position} tokens (see {@link StateLayout}). */
    public static long serialisedBytes(ModelConfig config, long position) { return StateLayout.bytes(config, position); }

    /** An incremental serialiser of this state, for shipping it a chunk at a time. */
    public StateEncoder encoder() { return new StateEncoder(this); }

    public void writeTo(DataOutput out) throws IOException {
        StateEncoder e = encoder();
        ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
        while (e.hasRemaining()) {
            buf.clear();
            e.encode(buf);
            out.write(buf.array(), 0, buf.position());
        }
    }

    /** Reads a state written by {@link #writeTo}; a state of another model shape is rejected by field. */
    public static SequenceState readFrom(DataInput in, ModelConfig config) throws IOException {
        byte[] preamble = new byte[StateLayout.PREAMBLE_BYTES];
        in.readFully(preamble);
        ByteBuffer p = ByteBuffer.wrap(preamble); // big-endian
        if (p.getInt(0) != StateLayout.MAGIC) throw new IOException("not a LightMesh sequence state (bad magic)");
        int position = p.getInt(StateLayout.PREAMBLE_BYTES - Integer.BYTES);
        if (position < 0 || position > config.maxPositions()) throw new IOException("sequence state position " + position + " out of range");
        StateDecoder d = new StateDecoder(config, position, position);
        d.decode(p);
        byte[] bytes = new byte[64 * 1024];
        while (!d.complete()) {
            int n = (int) Math.min(bytes.length, d.totalBytes() - d.receivedBytes());
            in.readFully(bytes, 0, n);
            d.decode(ByteBuffer.wrap(bytes, 0, n));
        }
        return d.state();
    }
}
