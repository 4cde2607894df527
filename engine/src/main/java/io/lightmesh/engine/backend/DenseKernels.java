package io.lightmesh.engine.backend;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector kernels over fp32 heap arrays for the attention math: a small row-major matrix product and the row
 * operations of an online softmax. Stateless math only; {@link VectorOps} owns scratch buffers and threads.
 */
final class DenseKernels {
    static final VectorSpecies<Float> F = WeightKernels.F;
    static final int L = F.length();

    private DenseKernels() {}

    static int roundUp(int x, int m) { return (x + m - 1) / m * m; }

    /**
     * C[M, N] (+)= A[M, K] . B[K, N], all row-major with leading dimensions lda, ldb, ldc: each A element is
     * broadcast against a vector of a B row, so no horizontal sums are needed.
     * launch shape: one call per tile a thread owns; 4 rows x 2 vectors of C live in registers.
     */
    static void gemm(float[] a, int aOff, int lda, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc,
                     int M, int N, int K, boolean accumulate) {
        int i = 0;
        for (; i + 4 <= M; i += 4) {
            int j = 0;
            for (; j + 4 * L <= N; j += 4 * L) tile4x4(a, aOff + i * lda, lda, b, bOff + j, ldb, c, cOff + i * ldc + j, ldc, K, accumulate);
            for (; j + 2 * L <= N; j += 2 * L) tile4x2(a, aOff + i * lda, lda, b, bOff + j, ldb, c, cOff + i * ldc + j, ldc, K, accumulate);
            for (; j + L <= N; j += L) {
                for (int r = 0; r < 4; r++) row1(a, aOff + (i + r) * lda, b, bOff + j, ldb, c, cOff + (i + r) * ldc + j, K, accumulate);
            }
            if (j < N) for (int r = 0; r < 4; r++) rowScalar(a, aOff + (i + r) * lda, b, bOff, ldb, c, cOff + (i + r) * ldc, j, N, K, accumulate);
        }
        for (; i < M; i++) {
            int j = 0;
            for (; j + L <= N; j += L) row1(a, aOff + i * lda, b, bOff + j, ldb, c, cOff + i * ldc + j, K, accumulate);
            if (j < N) rowScalar(a, aOff + i * lda, b, bOff, ldb, c, cOff + i * ldc, j, N, K, accumulate);
        }
    }

    private static void tile4x4(float[] a, int ao, int lda, float[] b, int bo, int ldb, float[] c, int co, int ldc,
                                int K, boolean accumulate) {
        FloatVector c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33;
        if (accumulate) {
            c00 = FloatVector.fromArray(F, c, co); c01 = FloatVector.fromArray(F, c, co + L);
            c02 = FloatVector.fromArray(F, c, co + 2 * L); c03 = FloatVector.fromArray(F, c, co + 3 * L);
            int r = co + ldc;
            c10 = FloatVector.fromArray(F, c, r); c11 = FloatVector.fromArray(F, c, r + L);
            c12 = FloatVector.fromArray(F, c, r + 2 * L); c13 = FloatVector.fromArray(F, c, r + 3 * L);
            r += ldc;
            c20 = FloatVector.fromArray(F, c, r); c21 = FloatVector.fromArray(F, c, r + L);
            c22 = FloatVector.fromArray(F, c, r + 2 * L); c23 = FloatVector.fromArray(F, c, r + 3 * L);
            r += ldc;
            c30 = FloatVector.fromArray(F, c, r); c31 = FloatVector.fromArray(F, c, r + L);
            c32 = FloatVector.fromArray(F, c, r + 2 * L); c33 = FloatVector.fromArray(F, c, r + 3 * L);
        } else {
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = FloatVector.zero(F);
            c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = c00;
        }
        for (int k = 0; k < K; k++) {
            int bk = bo + k * ldb;
            FloatVector b0 = FloatVector.fromArray(F, b, bk), b1 = FloatVector.fromArray(F, b, bk + L);
            FloatVector b2 = FloatVector.fromArray(F, b, bk + 2 * L), b3 = FloatVector.fromArray(F, b, bk + 3 * L);
            FloatVector x = FloatVector.broadcast(F, a[ao + k]);
            c00 = b0.fma(x, c00); c01 = b1.fma(x, c01); c02 = b2.fma(x, c02); c03 = b3.fma(x, c03);
            x = FloatVector.broadcast(F, a[ao + lda + k]);
            c10 = b0.fma(x, c10); c11 = b1.fma(x, c11); c12 = b2.fma(x, c12); c13 = b3.fma(x, c13);
            x = FloatVector.broadcast(F, a[ao + 2 * lda + k]);
            c20 = b0.fma(x, c20); c21 = b1.fma(x, c21); c22 = b2.fma(x, c22); c23 = b3.fma(x, c23);
            x = FloatVector.broadcast(F, a[ao + 3 * lda + k]);
            c30 = b0.fma(x, c30); c31 = b1.fma(x, c31); c32 = b2.fma(x, c32); c33 = b3.fma(x, c33);
        }
        c00.intoArray(c, co); c01.intoArray(c, co + L); c02.intoArray(c, co + 2 * L); c03.intoArray(c, co + 3 * L);
        int r = co + ldc;
        c10.intoArray(c, r); c11.intoArray(c, r + L); c12.intoArray(c, r + 2 * L); c13.intoArray(c, r + 3 * L);
        r += ldc;
        c20.intoArray(c, r); c21.intoArray(c, r + L); c22.intoArray(c, r + 2 * L); c23.intoArray(c, r + 3 * L);
        r += ldc;
        c30.intoArray(c, r); c31.intoArray(c, r + L); c32.intoArray(c, r + 2 * L); c33.intoArray(c, r + 3 * L);
    }

    private static void tile4x2(float[] a, int ao, int lda, float[] b, int bo, int ldb, float[] c, int co, int ldc,
                                int K, boolean accumulate) {
        FloatVector c00, c01, c10, c11, c20, c21, c30, c31;
        if (accumulate) {
            c00 = FloatVector.fromArray(F, c, co); c01 = FloatVector.fromArray(F, c, co + L);
            c10 = FloatVector.fromArray(F, c, co + ldc); c11 = FloatVector.fromArray(F, c, co + ldc + L);
            c20 = FloatVector.fromArray(F, c, co + 2 * ldc); c21 = FloatVector.fromArray(F, c, co + 2 * ldc + L);
            c30 = FloatVector.fromArray(F, c, co + 3 * ldc); c31 = FloatVector.fromArray(F, c, co + 3 * ldc + L);
        } else {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = FloatVector.zero(F);
        }
        for (int k = 0; k < K; k++) {
            FloatVector b0 = FloatVector.fromArray(F, b, bo + k * ldb), b1 = FloatVector.fromArray(F, b, bo + k * ldb + L);
            FloatVector x = FloatVector.broadcast(F, a[ao + k]);
            c00 = b0.fma(x, c00); c01 = b1.fma(x, c01);
            x = FloatVector.broadcast(F, a[ao + lda + k]);
            c10 = b0.fma(x, c10); c11 = b1.fma(x, c11);
            x = FloatVector.broadcast(F, a[ao + 2 * lda + k]);
            c20 = b0.fma(x, c20); c21 = b1.fma(x, c21);
            x = FloatVector.broadcast(F, a[ao + 3 * lda + k]);
            c30 = b0.fma(x, c30); c31 = b1.fma(x, c31);
        }
        c00.intoArray(c, co); c01.intoArray(c, co + L);
        c10.intoArray(c, co + ldc); c11.intoArray(c, co + ldc + L);
        c20.intoArray(c, co + 2 * ldc); c21.intoArray(c, co + 2 * ldc + L);
        c30.intoArray(c, co + 3 * ldc); c31.intoArray(c, co + 3 * ldc + L);
    }

    private static void row1(float[] a, int ao, float[] b, int bo, int ldb, float[] c, int co, int K, boolean accumulate) {
        FloatVector acc = accumulate ? FloatVector.fromArray(F, c, co) : FloatVector.zero(F);
        for (int k = 0; k < K; k++) acc = FloatVector.fromArray(F, b, bo + k * ldb).fma(FloatVector.broadcast(F, a[ao + k]), acc);
        acc.intoArray(c, co);
    }

    /** Columns j0..N-1 of one row: the tail narrower than a vector. */
    private static void rowScalar(float[] a, int ao, float[] b, int bo, int ldb, float[] c, int co, int j0, int N,
                                  int K, boolean accumulate) {
        for (int j = j0; j < N; j++) {
            float s = accumulate ? c[co + j] : 0f;
            for (int k = 0; k < K; k++) s += a[ao + k] * b[bo + k * ldb + j];
            c[co + j] = s;
        }
    }

    /** x[off .. off+len) *= f. */
    static void scale(float[] x, int off, int len, float f) {
        int i = 0;
        for (; i + L <= len; i += L) FloatVector.fromArray(F, x, off + i).mul(f).intoArray(x, off + i);
        for (; i < len; i++) x[off + i] *= f;
    }

    /** x[off .. off+len) *= y[yOff .. yOff+len), elementwise. */
    static void mul(float[] x, int off, float[] y, int yOff, int len) {
        int i = 0;
        for (; i + L <= len; i += L) {
            FloatVector.fromArray(F, x, off + i).mul(FloatVector.fromArray(F, y, yOff + i)).intoArray(x, off + i);
        }
        for (; i < len; i++) x[off + i] *= y[yOff + i];
    }

    static float max(float[] x, int off, int len) {
        float m = Float.NEGATIVE_INFINITY;
        int i = 0;
        if (len >= L) {
            FloatVector acc = FloatVector.fromArray(F, x, off);
            for (i = L; i + L <= len; i += L) acc = acc.max(FloatVector.fromArray(F, x, off + i));
            m = acc.reduceLanes(VectorOperators.MAX);
        }
        for (; i < len; i++) m = Math.max(m, x[off + i]);
        return m;
    }

    /** x[i] = exp(x[i] - max) over off .. off+len; returns their sum. */
    static float expMinusSum(float[] x, int off, int len, float max) {
        FloatVector sum = FloatVector.zero(F);
        int i = 0;
        for (; i + L <= len; i += L) {
            FloatVector e = FloatVector.fromArray(F, x, off + i).sub(max).lanewise(VectorOperators.EXP);
            e.intoArray(x, off + i);
            sum = sum.add(e);
        }
        float s = sum.reduceLanes(VectorOperators.ADD);
        for (; i < len; i++) {
            float e = (float) Math.exp(x[off + i] - max);
            x[off + i] = e;
            s += e;
        }
        return s;
    }
}
