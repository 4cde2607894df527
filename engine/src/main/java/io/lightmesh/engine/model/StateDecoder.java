package io.lightmesh.engine.model;

import io.lightmesh.engine.config.ModelConfig;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * Deserialises a {@link SequenceState} incrementally into a state allocated up front: the position is known before
 * the bytes arrive (a hand-off's header carries it), so every array is sized at construction and each
 * {@link #decode} call copies its bytes straight to their place. Pieces may split floats and layers anywhere.
 *
 * <p>The integers of the stream (magic, version, model shape, position, each softmax layer's KV length) must equal
 * what the constructor was told, and are checked as soon as they are complete; a mismatch, or bytes past the end,
 * is an {@link IOException} after which the decoder refuses further input. Not thread-safe.
 */
public final class StateDecoder {
    private final SequenceState state;
    private final List<StateLayout.Run> runs;
    private final long total;
    private long received;
    private int run;       // index of the current run
    private long offset;   // bytes of the current run already read
    private int carry;     // bytes of a split int or float gathered so far, in stream order
    private String failure;

    /**
     * Allocates a state of {@code position} tokens for model {@code config}, its KV caches sized for
     * {@code kvCapacity} tokens (at least {@code position}: room to decode into without growing).
     */
    public StateDecoder(ModelConfig config, int position, int kvCapacity) {
        if (position < 0 || position > config.maxPositions()) {
            throw new IllegalArgumentException("position " + position + " outside 0.." + config.maxPositions());
        }
        state = new SequenceState(config, Math.max(position, kvCapacity));
        state.advance(position);
        for (int l = 0; l < config.numLayers(); l++) if (config.isSoftmax(l)) state.kvCache(l).setLength(position);
        runs = StateLayout.runs(state);
        long t = 0;
        for (StateLayout.Run r : runs) t += r.bytes();
        total = t;
    }

    /** Bytes of the whole serialised form. */
    public long totalBytes() { return total; }

    /** Bytes of memory the state being filled holds (its KV caches at their capacity). */
    public long allocatedBytes() { return state.allocatedBytes(); }

    /** Bytes consumed so far. */
    public long receivedBytes() { return received; }

    public boolean complete() { return failure == null && received == total; }

    /** Consumes all of {@code src} (any size, any alignment). */
    public void decode(ByteBuffer src) throws IOException {
        if (failure != null) throw new IOException("state decoder failed earlier: " + failure);
        if (src.remaining() > total - received) {
            throw fail(src.remaining() + " bytes offered with " + (total - received) + " left of " + total);
        }
        while (src.hasRemaining()) {
            StateLayout.Run r = runs.get(run);
            int n = (int) Math.min(src.remaining(), r.bytes() - offset);
            switch (r) {
                case StateLayout.Ints ints -> readInts(ints, src, n);
                case StateLayout.Floats f -> readFloats(f.array(), src, n);
            }
            offset += n;
            received += n;
            if (offset == r.bytes()) { run++; offset = 0; }
        }
    }

    /** The decoded state; only once every byte arrived. */
    public SequenceState state() {
        if (!complete()) throw new IllegalStateException("state incomplete: " + received + " of " + total + " bytes"
                + (failure == null ? "" : " (" + failure + ")"));
        return state;
    }

    private void readInts(StateLayout.Ints ints, ByteBuffer src, int n) throws IOException {
        for (int i = 0; i < n; i++) {
            long b = offset + i;
            carry = carry << 8 | (src.get() & 0xff);
            if ((b & 3) == 3) {
                int k = (int) (b >>> 2), want = ints.values()[k];
                if (carry != want) {
                    String name = ints.names()[k];
                    throw fail(switch (name) {
                        case "magic" -> "not a LightMesh sequence state (bad magic)";
                        case "version" -> "unsupported sequence state version " + carry;
                        default -> "sequence state has " + name + "=" + carry + " but " + want + " was expected";
                    });
                }
                carry = 0;
            }
        }
    }

    /** n bytes of src (little-endian floats) into a, from byte {@link #offset}: split floats through {@link #carry}. */
    private void readFloats(float[] a, ByteBuffer src, int n) {
        long b = offset, end = offset + n;
        while (b < end && (b & 3) != 0) gather(a, b++, src.get()); // the end of a float begun by the previous piece
        int whole = (int) ((end - b) >>> 2);
        if (whole > 0) {
            src.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(a, (int) (b >>> 2), whole);
            src.position(src.position() + whole * Float.BYTES);
            b += (long) whole * Float.BYTES;
        }
        while (b < end) gather(a, b++, src.get());                 // the start of one the next piece ends
    }

    private void gather(float[] a, long b, byte v) {
        carry |= (v & 0xff) << (8 * (int) (b & 3));
        if ((b & 3) == 3) {
            a[(int) (b >>> 2)] = Float.intBitsToFloat(carry);
            carry = 0;
        }
    }

    private IOException fail(String why) {
        failure = why;
        return new IOException(why);
    }
}
