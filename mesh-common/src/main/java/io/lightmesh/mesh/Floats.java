package io.lightmesh.mesh;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** fp32 activations to and from little-endian protobuf bytes (one bulk copy each way). */
public final class Floats {
    private Floats() {}

    public static ByteString toBytes(float[] a, int from, int n) {
        ByteBuffer b = ByteBuffer.allocate(n * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(a, from, n);
        return UnsafeByteOperations.unsafeWrap(b.array());
    }

    /** Reads n floats from {@code bytes} into {@code out[from..from+n)}. */
    public static void fromBytes(ByteString bytes, float[] out, int from, int n) {
        if (bytes.size() != n * Float.BYTES) throw new IllegalArgumentException("expected " + n * Float.BYTES + " bytes, got " + bytes.size());
        bytes.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out, from, n);
    }

    /** out[from..from+n) += the floats in bytes. */
    public static void addFromBytes(ByteString bytes, float[] out, int n) {
        if (bytes.size() != n * Float.BYTES) throw new IllegalArgumentException("expected " + n * Float.BYTES + " bytes, got " + bytes.size());
        java.nio.FloatBuffer fb = bytes.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        for (int i = 0; i < n; i++) out[i] += fb.get(i);
    }
}
