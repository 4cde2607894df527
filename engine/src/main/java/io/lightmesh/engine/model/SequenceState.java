package io.lightmesh.engine.model;

import io.lightmesh.engine.config.ModelConfig;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Everything a sequence carries between steps: one lightning state S [H, D, D] (fp32) per lightning layer, one
 * {@link KvCache} per softmax layer, and the number of tokens consumed. This is what prefill hands to decode.
 *
 * <p>Serialised form: {@link StateLayout}, written a piece at a time by {@link #encoder()} and read into a state
 * allocated up front by {@link StateDecoder}.
 */
public final class SequenceState {
    private final ModelConfig config;
    private final float[][] lightning; // [layer] -> [H, D, D], null for softmax layers
    private final KvCache[] kv;        // [layer] -> cache, null for lightning layers
    private int position;

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

    /** Tokens consumed so far: the position of the next token. */
    public int position() { return position; }

    void advance(int n) { position += n; }

    float[] lightningState(int layer) { return lightning[layer]; }

    KvCache kvCache(int layer) { return kv[layer]; }

    public ModelConfig config() { return config; }

    /** Bytes this state holds and a hand-off ships: lightning states plus valid KV rows. */
    public long byteSize() {
        long b = 0;
        for (int l = 0; l < lightning.length; l++) {
            b += lightning[l] != null ? (long) lightning[l].length * Float.BYTES : kv[l].byteSize();
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
