package io.lightmesh.engine.model;

import io.lightmesh.engine.config.ModelConfig;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Everything a sequence carries between steps: one lightning state S [H, D, D] (fp32) per lightning layer, one
 * {@link KvCache} per softmax layer, and the number of tokens consumed. This is what prefill hands to decode.
 *
 * <p>Serialised form (little-endian floats): magic, version, layers, H, D, KV, position, then per layer in order
 * either the D x D x H state or the KV length followed by its K and V rows.
 */
public final class SequenceState {
    private static final int MAGIC = 0x4c4d5353; // "LMSS"
    private static final int VERSION = 1;

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

    /** Bytes of the lightning states alone: fixed per model, whatever the length. */
    public long lightningBytes() {
        long b = 0;
        for (float[] s : lightning) if (s != null) b += (long) s.length * Float.BYTES;
        return b;
    }

    public void writeTo(DataOutput out) throws IOException {
        out.writeInt(MAGIC);
        out.writeInt(VERSION);
        out.writeInt(config.numLayers());
        out.writeInt(config.numHeads());
        out.writeInt(config.headDim());
        out.writeInt(config.numKvHeads());
        out.writeInt(position);
        for (int l = 0; l < lightning.length; l++) {
            if (lightning[l] != null) {
                writeFloats(out, lightning[l], lightning[l].length);
            } else {
                KvCache c = kv[l];
                out.writeInt(c.length());
                writeFloats(out, c.keys(), c.length() * c.rowWidth());
                writeFloats(out, c.values(), c.length() * c.rowWidth());
            }
        }
    }

    /** Reads a state written by {@link #writeTo}; a state of another model shape is rejected by field. */
    public static SequenceState readFrom(DataInput in, ModelConfig config) throws IOException {
        if (in.readInt() != MAGIC) throw new IOException("not a LightMesh sequence state (bad magic)");
        int version = in.readInt();
        if (version != VERSION) throw new IOException("unsupported sequence state version " + version);
        expect("layers", in.readInt(), config.numLayers());
        expect("heads", in.readInt(), config.numHeads());
        expect("head_dim", in.readInt(), config.headDim());
        expect("kv_heads", in.readInt(), config.numKvHeads());
        int position = in.readInt();
        SequenceState s = new SequenceState(config, 1);
        s.position = position;
        for (int l = 0; l < s.lightning.length; l++) {
            if (s.lightning[l] != null) {
                readFloats(in, s.lightning[l], s.lightning[l].length);
            } else {
                int len = in.readInt();
                if (len < 0 || len > position) throw new IOException("layer " + l + ": KV length " + len + " exceeds position " + position);
                KvCache c = s.kv[l];
                c.setLength(len);
                readFloats(in, c.keys(), len * c.rowWidth());
                readFloats(in, c.values(), len * c.rowWidth());
            }
        }
        return s;
    }

    private static void expect(String field, int got, int want) throws IOException {
        if (got != want) throw new IOException("sequence state has " + field + "=" + got + " but the model has " + want);
    }

    private static void writeFloats(DataOutput out, float[] a, int n) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(64 * 1024).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; ) {
            int m = Math.min(n - i, buf.capacity() / 4);
            buf.clear();
            buf.asFloatBuffer().put(a, i, m);
            out.write(buf.array(), 0, m * 4);
            i += m;
        }
    }

    private static void readFloats(DataInput in, float[] a, int n) throws IOException {
        byte[] bytes = new byte[64 * 1024];
        ByteBuffer buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; ) {
            int m = Math.min(n - i, bytes.length / 4);
            in.readFully(bytes, 0, m * 4);
            buf.clear();
            buf.asFloatBuffer().get(a, i, m);
            i += m;
        }
    }
}
