package io.lightmesh.engine.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A named, row-major tensor over a memory segment, used in place: a memory-mapped checkpoint file or a heap array.
 * Storage may be F32, BF16 or F16; reads widen to fp32.
 */
public final class Tensor {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String name;
    private final DType dtype;
    private final long[] shape;
    private final MemorySegment data;

    public Tensor(String name, DType dtype, long[] shape, MemorySegment data) {
        long n = 1;
        for (long d : shape) n *= d;
        if (data.byteSize() != n * dtype.bytes()) {
            throw new IllegalArgumentException("tensor " + name + ": shape " + Arrays.toString(shape) + " of " + dtype
                    + " needs " + n * dtype.bytes() + " bytes, got " + data.byteSize());
        }
        this.name = name;
        this.dtype = dtype;
        this.shape = shape.clone();
        this.data = data;
    }

    /** A heap fp32 tensor holding {@code values}. */
    public static Tensor ofFloats(String name, float[] values, long... shape) {
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * 4]);
        MemorySegment.copy(values, 0, seg, F32, 0, values.length);
        return new Tensor(name, DType.F32, shape, seg);
    }

    public String name() { return name; }
    public DType dtype() { return dtype; }
    public long[] shape() { return shape.clone(); }
    public int rank() { return shape.length; }
    public long dim(int i) { return shape[i]; }
    public MemorySegment data() { return data; }

    public long size() {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    /** Element {@code i} (flat, row-major) widened to fp32. */
    public float get(long i) {
        return switch (dtype) {
            case F32 -> data.get(F32, i * 4);
            case BF16 -> bf16ToFloat(data.get(I16, i * 2));
            case F16 -> Float.float16ToFloat(data.get(I16, i * 2));
        };
    }

    /** Copies {@code n} elements from flat index {@code from} into {@code dst[off..]} as fp32. */
    public void copyTo(long from, float[] dst, int off, int n) {
        if (dtype == DType.F32) {
            MemorySegment.copy(data, F32, from * 4, dst, off, n);
            return;
        }
        for (int i = 0; i < n; i++) dst[off + i] = get(from + i);
    }

    /** The whole tensor as a new fp32 array (small tensors: norms, router gates). */
    public float[] toFloatArray() {
        if (size() > Integer.MAX_VALUE) throw new IllegalStateException("tensor " + name + " too large for one array");
        float[] out = new float[(int) size()];
        copyTo(0, out, 0, out.length);
        return out;
    }

    /** Rows {@code [from, from+count)} of a 2-D tensor or slices along dim 0 of any rank, as a view. */
    public Tensor slice0(long from, long count, String sliceName) {
        long rowElems = size() / shape[0];
        long[] s = shape.clone();
        s[0] = count;
        return new Tensor(sliceName, dtype, s,
                data.asSlice(from * rowElems * dtype.bytes(), count * rowElems * dtype.bytes()));
    }

    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xffff) << 16);
    }

    /** Round-to-nearest-even fp32 to bf16, as torch does. */
    public static short floatToBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) return (short) 0x7fc0;
        int rounding = 0x7fff + ((bits >>> 16) & 1);
        return (short) ((bits + rounding) >>> 16);
    }

    public void checkShape(long... expected) {
        if (!Arrays.equals(shape, expected)) {
            throw new IllegalArgumentException("tensor " + name + ": expected shape " + Arrays.toString(expected)
                    + ", checkpoint has " + Arrays.toString(shape));
        }
    }

    @Override
    public String toString() {
        return name + dtype + Arrays.toString(shape);
    }
}
