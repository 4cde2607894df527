package io.lightmesh.engine.model;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * Serialises a {@link SequenceState} incrementally: each {@link #encode} call writes the next bytes of its
 * {@link StateLayout serialised form} into the caller's buffer, straight from the state's arrays, so a state of any
 * size is shipped with one chunk of memory. Any buffer size works (a float or an integer may be split between calls).
 *
 * <p>The state must not change while it is being encoded. Not thread-safe.
 */
public final class StateEncoder {
    private final List<StateLayout.Run> runs;
    private final long total;
    private long produced;
    private int run;      // index of the current run
    private long offset;  // bytes of the current run already written

    StateEncoder(SequenceState s) {
        this.runs = StateLayout.runs(s);
        long t = 0;
        for (StateLayout.Run r : runs) t += r.bytes();
        this.total = t;
    }

    /** Bytes of the whole serialised form. */
    public long totalBytes() { return total; }

    /** Bytes written so far. */
    public long encodedBytes() { return produced; }

    public boolean hasRemaining() { return produced < total; }

    /** Writes the next {@code min(dst.remaining(), bytes left)} bytes into {@code dst}; returns how many. */
    public int encode(ByteBuffer dst) {
        int start = dst.position();
        while (dst.hasRemaining() && run < runs.size()) {
            StateLayout.Run r = runs.get(run);
            int n = (int) Math.min(dst.remaining(), r.bytes() - offset);
            switch (r) {
                case StateLayout.Ints ints -> {
                    for (int i = 0; i < n; i++) {
                        long b = offset + i;
                        dst.put((byte) (ints.values()[(int) (b >>> 2)] >>> (24 - 8 * (int) (b & 3))));
                    }
                }
                case StateLayout.Floats f -> writeFloats(f.array(), offset, n, dst);
            }
            offset += n;
            if (offset == r.bytes()) { run++; offset = 0; }
        }
        int n = dst.position() - start;
        produced += n;
        return n;
    }

    /** Bytes [from, from + n) of a's little-endian image into dst: split floats byte by byte, whole ones in bulk. */
    private static void writeFloats(float[] a, long from, int n, ByteBuffer dst) {
        long b = from, end = from + n;
        while (b < end && (b & 3) != 0) dst.put(floatByte(a, b++));
        int whole = (int) ((end - b) >>> 2);
        if (whole > 0) {
            dst.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().put(a, (int) (b >>> 2), whole);
            dst.position(dst.position() + whole * Float.BYTES);
            b += (long) whole * Float.BYTES;
        }
        while (b < end) dst.put(floatByte(a, b++));
    }

    private static byte floatByte(float[] a, long b) {
        return (byte) (Float.floatToRawIntBits(a[(int) (b >>> 2)]) >>> (8 * (int) (b & 3)));
    }
}
