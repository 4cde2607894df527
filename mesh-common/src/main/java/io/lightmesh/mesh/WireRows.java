package io.lightmesh.mesh;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.lightmesh.engine.tensor.Tensor;
import io.lightmesh.proto.v1.ActivationDType;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;

/**
 * Rows of activations on the expert wire ({@link ActivationDType}): [rows, hidden] little-endian, fp32 (the default:
 * the bits of the host's floats) or bf16 (half the bytes; each value rounded to nearest even, as torch rounds, so a
 * row keeps about 3 significant decimal digits). One bulk pass each way, straight between the float arrays and the
 * message's bytes (wrapped, not copied again).
 */
public final class WireRows {
    private WireRows() {}

    /** Bytes of one element: 2 for BF16, 4 for F32 (and UNSPECIFIED, read as F32). */
    public static int elementBytes(ActivationDType d) { return d == ActivationDType.ACTIVATION_DTYPE_BF16 ? 2 : 4; }

    /** ACTIVATION_DTYPE_UNSPECIFIED read as F32; BF16 and F32 as they are; anything else refused. */
    public static ActivationDType normalize(ActivationDType d) {
        return switch (d) {
            case ACTIVATION_DTYPE_UNSPECIFIED, ACTIVATION_DTYPE_F32 -> ActivationDType.ACTIVATION_DTYPE_F32;
            case ACTIVATION_DTYPE_BF16 -> ActivationDType.ACTIVATION_DTYPE_BF16;
            default -> throw new IllegalArgumentException("activation dtype " + d + " is not supported (F32 or BF16)");
        };
    }

    /** Rows {@code rows[i]} of {@code x} ([*, hidden]), in that order, as one message field. */
    public static ByteString gather(float[] x, int[] rows, int hidden, ActivationDType d) {
        ByteBuffer b = ByteBuffer.allocate(rows.length * hidden * elementBytes(d)).order(ByteOrder.LITTLE_ENDIAN);
        if (d == ActivationDType.ACTIVATION_DTYPE_BF16) {
            ShortBuffer s = b.asShortBuffer();
            for (int i = 0, o = 0; i < rows.length; i++) {
                for (int c = 0, from = rows[i] * hidden; c < hidden; c++) s.put(o++, bf16(x[from + c]));
            }
        } else {
            FloatBuffer f = b.asFloatBuffer();
            for (int i = 0; i < rows.length; i++) f.put(i * hidden, x, rows[i] * hidden, hidden);
        }
        return UnsafeByteOperations.unsafeWrap(b.array());
    }

    /** The first {@code n} values of {@code x} as one message field. */
    public static ByteString encode(float[] x, int n, ActivationDType d) {
        ByteBuffer b = ByteBuffer.allocate(n * elementBytes(d)).order(ByteOrder.LITTLE_ENDIAN);
        if (d == ActivationDType.ACTIVATION_DTYPE_BF16) {
            ShortBuffer s = b.asShortBuffer();
            for (int i = 0; i < n; i++) s.put(i, bf16(x[i]));
        } else {
            b.asFloatBuffer().put(0, x, 0, n);
        }
        return UnsafeByteOperations.unsafeWrap(b.array());
    }

    /** A reader of one message field's rows (no copy of the bytes). */
    public static Reader reader(ByteString bytes, ActivationDType d) { return new Reader(bytes, d); }

    /** Reads rows of one field: row {@code i} into a float array, or added into one. */
    public static final class Reader {
        private final FloatBuffer f32;
        private final ShortBuffer bf16;

        private Reader(ByteString bytes, ActivationDType d) {
            ByteBuffer b = bytes.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
            if (d == ActivationDType.ACTIVATION_DTYPE_BF16) { bf16 = b.asShortBuffer(); f32 = null; }
            else { f32 = b.asFloatBuffer(); bf16 = null; }
        }

        /** dst[off .. off+hidden) = row i. */
        public void row(int i, int hidden, float[] dst, int off) {
            if (f32 != null) { f32.get(i * hidden, dst, off, hidden); return; }
            for (int c = 0, from = i * hidden; c < hidden; c++) dst[off + c] = Float.intBitsToFloat((bf16.get(from + c) & 0xffff) << 16);
        }

        /** dst[off .. off+hidden) += row i. */
        public void addRow(int i, int hidden, float[] dst, int off) {
            int from = i * hidden;
            if (f32 != null) {
                for (int c = 0; c < hidden; c++) dst[off + c] += f32.get(from + c);
            } else {
                for (int c = 0; c < hidden; c++) dst[off + c] += Float.intBitsToFloat((bf16.get(from + c) & 0xffff) << 16);
            }
        }
    }

    /** Round-to-nearest-even, as torch rounds ({@link Tensor#floatToBf16}). */
    private static short bf16(float v) { return Tensor.floatToBf16(v); }
}
