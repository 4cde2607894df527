package io.lightmesh.engine.backend;

import io.lightmesh.engine.tensor.DType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Vector kernels that read weight rows straight from a checkpoint's memory segment (F32, BF16 or F16, little-endian)
 * and widen them to fp32 in registers. Stateless math only: {@link VectorOps} owns the threads and the partitioning.
 *
 * <p>There is one method per dtype rather than a dtype switch inside the loops, because every vector has to stay in
 * registers: C2 only scalar-replaces Vector API values when the whole loop body is inlined into one method.
 * The scalar loop at the end of each kernel handles the {@code in % lanes} tail.
 */
final class WeightKernels {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    /** Shorts and ints with as many lanes as F: one load of L 16-bit weights widens to one float vector. */
    static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());

    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);

    private WeightKernels() {}

    // ---- loads: L weights at a byte offset, widened to fp32 -------------------------------------------------------

    static FloatVector loadF32(MemorySegment w, long byteOff) {
        return FloatVector.fromMemorySegment(F, w, byteOff, LE);
    }

    /** bf16 is the top half of an fp32: widen to int, shift left 16, reinterpret. */
    static FloatVector loadBf16(MemorySegment w, long byteOff) {
        ShortVector s = ShortVector.fromMemorySegment(S, w, byteOff, LE);
        return ((IntVector) s.convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16)
                .reinterpretAsFloats();
    }

    /**
     * IEEE half to float, exact for every bit pattern: move exponent and mantissa into fp32 position and rescale by
     * 2^112 (which also normalises half subnormals), force the exponent to all ones for inf/NaN (and
     * set the quiet bit of NaNs, as {@link Float#float16ToFloat} does), restore the sign.
     */
    static FloatVector loadF16(MemorySegment w, long byteOff) {
        ShortVector s = ShortVector.fromMemorySegment(S, w, byteOff, LE);
        IntVector h = (IntVector) s.convertShape(VectorOperators.S2I, I, 0);
        IntVector em = h.and(0x7fff).lanewise(VectorOperators.LSHL, 13);
        VectorMask<Integer> infNan = em.compare(VectorOperators.GE, 0x7c00 << 13);
        VectorMask<Integer> nan = em.compare(VectorOperators.GT, 0x7c00 << 13);
        IntVector bits = em.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()
                .lanewise(VectorOperators.OR, 0x7f800000, infNan)
                .lanewise(VectorOperators.OR, 0x00400000, nan); // quiet NaNs, as Float.float16ToFloat does
        return bits.or(h.and(0x8000).lanewise(VectorOperators.LSHL, 16)).reinterpretAsFloats();
    }

    static float getF32(MemorySegment w, long i) { return w.get(F32_LE, i * 4); }

    static float getBf16(MemorySegment w, long i) { return Float.intBitsToFloat((w.get(I16_LE, i * 2) & 0xffff) << 16); }

    static float getF16(MemorySegment w, long i) { return Float.float16ToFloat(w.get(I16_LE, i * 2)); }

    // ---- one weight row . one activation row (decode: streams the row once) ----------------------------------------
    // launch shape: one call per output element; rows of a matrix are split over threads by the caller.

    /** sum_i W[row + i] * x[xo + i] for i < in, W starting at element {@code row}. */
    static float dotF32(MemorySegment w, long row, float[] x, int xo, int in) {
        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F);
        long b = row * 4;
        int i = 0;
        for (; i <= in - 2 * L; i += 2 * L) {
            a0 = loadF32(w, b + 4L * i).fma(FloatVector.fromArray(F, x, xo + i), a0);
            a1 = loadF32(w, b + 4L * (i + L)).fma(FloatVector.fromArray(F, x, xo + i + L), a1);
        }
        for (; i <= in - L; i += L) a0 = loadF32(w, b + 4L * i).fma(FloatVector.fromArray(F, x, xo + i), a0);
        float acc = a0.add(a1).reduceLanes(VectorOperators.ADD);
        for (; i < in; i++) acc += getF32(w, row + i) * x[xo + i];
        return acc;
    }

    static float dotBf16(MemorySegment w, long row, float[] x, int xo, int in) {
        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F);
        long b = row * 2;
        int i = 0;
        for (; i <= in - 2 * L; i += 2 * L) {
            a0 = loadBf16(w, b + 2L * i).fma(FloatVector.fromArray(F, x, xo + i), a0);
            a1 = loadBf16(w, b + 2L * (i + L)).fma(FloatVector.fromArray(F, x, xo + i + L), a1);
        }
        for (; i <= in - L; i += L) a0 = loadBf16(w, b + 2L * i).fma(FloatVector.fromArray(F, x, xo + i), a0);
        float acc = a0.add(a1).reduceLanes(VectorOperators.ADD);
        for (; i < in; i++) acc += getBf16(w, row + i) * x[xo + i];
        return acc;
    }

    static float dotF16(MemorySegment w, long row, float[] x, int xo, int in) {
        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F);
        long b = row * 2;
        int i = 0;
        for (; i <= in - 2 * L; i += 2 * L) {
            a0 = loadF16(w, b + 2L * i).fma(FloatVector.fromArray(F, x, xo + i), a0);
            a1 = loadF16(w, b + 2L * (i + L)).fma(FloatVector.fromArray(F, x, xo + i + L), a1);
        }
        for (; i <= in - L; i += L) a0 = loadF16(w, b + 2L * i).fma(FloatVector.fromArray(F, x, xo + i), a0);
        float acc = a0.add(a1).reduceLanes(VectorOperators.ADD);
        for (; i < in; i++) acc += getF16(w, row + i) * x[xo + i];
        return acc;
    }

    // ---- one weight row . four activation rows (small batches: each weight vector is widened once) ----------------
    // launch shape: one call per (output row, group of up to 4 tokens); a short group repeats a token offset.

    static void dot4F32(MemorySegment w, long row, float[] x, int x0, int x1, int x2, int x3, int in, float[] r) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        long b = row * 4;
        int i = 0;
        for (; i <= in - L; i += L) {
            FloatVector wv = loadF32(w, b + 4L * i);
            a0 = wv.fma(FloatVector.fromArray(F, x, x0 + i), a0);
            a1 = wv.fma(FloatVector.fromArray(F, x, x1 + i), a1);
            a2 = wv.fma(FloatVector.fromArray(F, x, x2 + i), a2);
            a3 = wv.fma(FloatVector.fromArray(F, x, x3 + i), a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; i < in; i++) {
            float wi = getF32(w, row + i);
            s0 += wi * x[x0 + i]; s1 += wi * x[x1 + i]; s2 += wi * x[x2 + i]; s3 += wi * x[x3 + i];
        }
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3;
    }

    static void dot4Bf16(MemorySegment w, long row, float[] x, int x0, int x1, int x2, int x3, int in, float[] r) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        long b = row * 2;
        int i = 0;
        for (; i <= in - L; i += L) {
            FloatVector wv = loadBf16(w, b + 2L * i);
            a0 = wv.fma(FloatVector.fromArray(F, x, x0 + i), a0);
            a1 = wv.fma(FloatVector.fromArray(F, x, x1 + i), a1);
            a2 = wv.fma(FloatVector.fromArray(F, x, x2 + i), a2);
            a3 = wv.fma(FloatVector.fromArray(F, x, x3 + i), a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; i < in; i++) {
            float wi = getBf16(w, row + i);
            s0 += wi * x[x0 + i]; s1 += wi * x[x1 + i]; s2 += wi * x[x2 + i]; s3 += wi * x[x3 + i];
        }
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3;
    }

    static void dot4F16(MemorySegment w, long row, float[] x, int x0, int x1, int x2, int x3, int in, float[] r) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        long b = row * 2;
        int i = 0;
        for (; i <= in - L; i += L) {
            FloatVector wv = loadF16(w, b + 2L * i);
            a0 = wv.fma(FloatVector.fromArray(F, x, x0 + i), a0);
            a1 = wv.fma(FloatVector.fromArray(F, x, x1 + i), a1);
            a2 = wv.fma(FloatVector.fromArray(F, x, x2 + i), a2);
            a3 = wv.fma(FloatVector.fromArray(F, x, x3 + i), a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; i < in; i++) {
            float wi = getF16(w, row + i);
            s0 += wi * x[x0 + i]; s1 += wi * x[x1 + i]; s2 += wi * x[x2 + i]; s3 += wi * x[x3 + i];
        }
        r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3;
    }

    // ---- widening copy (prefill: a tile of weight rows is widened once and reused for many tokens) ----------------

    /** dst[off .. off+count) = W[from .. from+count) as fp32. */
    static void toFloats(MemorySegment w, DType dtype, long from, float[] dst, int off, int count) {
        int i = 0;
        switch (dtype) {
            case F32 -> {
                MemorySegment.copy(w, F32_LE, from * 4, dst, off, count);
                return;
            }
            case BF16 -> {
                for (; i <= count - L; i += L) loadBf16(w, (from + i) * 2).intoArray(dst, off + i);
                for (; i < count; i++) dst[off + i] = getBf16(w, from + i);
            }
            case F16 -> {
                for (; i <= count - L; i += L) loadF16(w, (from + i) * 2).intoArray(dst, off + i);
                for (; i < count; i++) dst[off + i] = getF16(w, from + i);
            }
        }
    }

    /** Column offsets 0, in, 2 in, ... for gathering one column of an L-row strip; per in, cached. */
    private static final ThreadLocal<int[]> STRIP_INDEX = ThreadLocal.withInitial(() -> new int[L + 1]);

    /**
     * dst[i * ld + c0 + r] = strip[r * in + i] for r < L, i < in: an L-row strip of widened weights transposed into
     * columns c0..c0+L-1 of W^T, one gather and one full-vector store per column.
     */
    static void transposeStrip(float[] strip, int in, float[] dst, int ld, int c0) {
        int[] idx = STRIP_INDEX.get();
        if (idx[L] != in) {
            for (int r = 0; r < L; r++) idx[r] = r * in;
            idx[L] = in;
        }
        for (int i = 0; i < in; i++) FloatVector.fromArray(F, strip, i, idx, 0).intoArray(dst, i * ld + c0);
    }
}
