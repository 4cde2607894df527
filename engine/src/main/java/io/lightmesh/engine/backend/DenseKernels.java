package io.lightmesh.engine.backend;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
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
        gemm(a, aOff, lda, 1, b, bOff, ldb, c, cOff, ldc, M, N, K, accumulate);
    }

    /** As above with A[i, k] at a[aOff + i * lda + k * aks]: A may be read transposed (lda = 1) in place. */
    static void gemm(float[] a, int aOff, int lda, int aks, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc,
                     int M, int N, int K, boolean accumulate) {
        int i = 0;
        for (; i + 4 <= M; i += 4) {
            int j = 0;
            for (; j + 4 * L <= N; j += 4 * L) tile4x4(a, aOff + i * lda, lda, aks, b, bOff + j, ldb, c, cOff + i * ldc + j, ldc, K, accumulate);
            for (; j + 2 * L <= N; j += 2 * L) tile4x2(a, aOff + i * lda, lda, aks, b, bOff + j, ldb, c, cOff + i * ldc + j, ldc, K, accumulate);
            for (; j + L <= N; j += L) {
                for (int r = 0; r < 4; r++) row1(a, aOff + (i + r) * lda, aks, b, bOff + j, ldb, c, cOff + (i + r) * ldc + j, K, accumulate);
            }
            if (j < N) {
                VectorMask<Float> tail = F.indexInRange(0, N - j);
                for (int r = 0; r < 4; r++) rowMasked(a, aOff + (i + r) * lda, aks, b, bOff + j, ldb, c, cOff + (i + r) * ldc + j, K, accumulate, tail);
            }
        }
        for (; i < M; i++) {
            int j = 0;
            for (; j + L <= N; j += L) row1(a, aOff + i * lda, aks, b, bOff + j, ldb, c, cOff + i * ldc + j, K, accumulate);
            if (j < N) rowMasked(a, aOff + i * lda, aks, b, bOff + j, ldb, c, cOff + i * ldc + j, K, accumulate, F.indexInRange(0, N - j));
        }
    }

    private static void tile4x4(float[] a, int ao, int lda, int aks, float[] b, int bo, int ldb, float[] c, int co, int ldc,
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
            FloatVector x = FloatVector.broadcast(F, a[ao + k * aks]);
            c00 = b0.fma(x, c00); c01 = b1.fma(x, c01); c02 = b2.fma(x, c02); c03 = b3.fma(x, c03);
            x = FloatVector.broadcast(F, a[ao + lda + k * aks]);
            c10 = b0.fma(x, c10); c11 = b1.fma(x, c11); c12 = b2.fma(x, c12); c13 = b3.fma(x, c13);
            x = FloatVector.broadcast(F, a[ao + 2 * lda + k * aks]);
            c20 = b0.fma(x, c20); c21 = b1.fma(x, c21); c22 = b2.fma(x, c22); c23 = b3.fma(x, c23);
            x = FloatVector.broadcast(F, a[ao + 3 * lda + k * aks]);
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

    private static void tile4x2(float[] a, int ao, int lda, int aks, float[] b, int bo, int ldb, float[] c, int co, int ldc,
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
            FloatVector x = FloatVector.broadcast(F, a[ao + k * aks]);
            c00 = b0.fma(x, c00); c01 = b1.fma(x, c01);
            x = FloatVector.broadcast(F, a[ao + lda + k * aks]);
            c10 = b0.fma(x, c10); c11 = b1.fma(x, c11);
            x = FloatVector.broadcast(F, a[ao + 2 * lda + k * aks]);
            c20 = b0.fma(x, c20); c21 = b1.fma(x, c21);
            x = FloatVector.broadcast(F, a[ao + 3 * lda + k * aks]);
            c30 = b0.fma(x, c30); c31 = b1.fma(x, c31);
        }
        c00.intoArray(c, co); c01.intoArray(c, co + L);
        c10.intoArray(c, co + ldc); c11.intoArray(c, co + ldc + L);
        c20.intoArray(c, co + 2 * ldc); c21.intoArray(c, co + 2 * ldc + L);
        c30.intoArray(c, co + 3 * ldc); c31.intoArray(c, co + 3 * ldc + L);
    }

    private static void row1(float[] a, int ao, int aks, float[] b, int bo, int ldb, float[] c, int co, int K, boolean accumulate) {
        FloatVector acc = accumulate ? FloatVector.fromArray(F, c, co) : FloatVector.zero(F);
        for (int k = 0; k < K; k++) acc = FloatVector.fromArray(F, b, bo + k * ldb).fma(FloatVector.broadcast(F, a[ao + k * aks]), acc);
        acc.intoArray(c, co);
    }

    /** The columns of one row narrower than a vector, as a masked vector (lanes outside the mask are not touched). */
    private static void rowMasked(float[] a, int ao, int aks, float[] b, int bo, int ldb, float[] c, int co, int K,
                                  boolean accumulate, VectorMask<Float> m) {
        FloatVector acc = accumulate ? FloatVector.fromArray(F, c, co, m) : FloatVector.zero(F);
        for (int k = 0; k < K; k++) acc = FloatVector.fromArray(F, b, bo + k * ldb, m).fma(FloatVector.broadcast(F, a[ao + k * aks]), acc);
        acc.intoArray(c, co, m);
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
            FloatVector e = exp(FloatVector.fromArray(F, x, off + i).sub(max));
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

    /**
     * One key block of an online softmax kept transposed, vectorised along the query rows: st [kb, mp] holds the
     * scores of kb keys (rows) for mp query rows (columns; mp a multiple of L, masked entries -inf, every column
     * with a finite max so far). Updates the running max m and sum l, leaves exp(st - m_new) in st and the factor
     * exp(m_old - m_new) by which earlier output must be rescaled in corr.
     */
    static void onlineSoftmaxColumns(float[] st, int kb, int mp, float[] m, float[] l, float[] corr) {
        for (int r = 0; r < mp; r += L) {
            FloatVector bm = FloatVector.fromArray(F, st, r);
            for (int j = 1; j < kb; j++) bm = bm.max(FloatVector.fromArray(F, st, j * mp + r));
            FloatVector mOld = FloatVector.fromArray(F, m, r), mNew = mOld.max(bm);
            FloatVector sum = FloatVector.zero(F);
            for (int j = 0; j < kb; j++) {
                FloatVector e = exp(FloatVector.fromArray(F, st, j * mp + r).sub(mNew));
                e.intoArray(st, j * mp + r);
                sum = sum.add(e);
            }
            FloatVector c = exp(mOld.sub(mNew)); // 0 on the first block (m_old = -inf)
            c.intoArray(corr, r);
            mNew.intoArray(m, r);
            FloatVector.fromArray(F, l, r).fma(c, sum).intoArray(l, r);
        }
    }

    /** x[row * ld + off + j] *= f[j] for rows 0..rows-1, j < len (len a multiple of L). */
    static void scaleColumns(float[] x, int off, int ld, int rows, float[] f, int len) {
        for (int j = 0; j < len; j += L) {
            FloatVector fj = FloatVector.fromArray(F, f, j);
            for (int r = 0; r < rows; r++) {
                int o = off + r * ld + j;
                FloatVector.fromArray(F, x, o).mul(fj).intoArray(x, o);
            }
        }
    }

    private static final float LOG2E = 1.44269504f, LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;
    private static final float ROUND = 12582912f; // 1.5 * 2^23: adding it rounds to an integer in the low bits

    /**
     * e^x for the softmax (arguments <= 0 there), Cephes' expf: x = n ln2 + r with |r| <= ln2/2, a degree-6
     * polynomial for e^r, 2^n built in the exponent bits. Within 2 ulp of Math.exp for x in [-87, 88]; below
     * that (and for -inf) it returns 0, where e^x is at most a denormal. About 4x faster here than
     * {@code lanewise(EXP)}, whose AMD path is not the short-vector math library.
     */
    static FloatVector exp(FloatVector x) {
        FloatVector xc = x.max(-88f).min(88f);
        FloatVector t = xc.fma(LOG2E, ROUND);
        FloatVector n = t.sub(ROUND);
        FloatVector r = n.fma(FloatVector.broadcast(F, -LN2_HI), xc);
        r = n.fma(FloatVector.broadcast(F, -LN2_LO), r);
        FloatVector p = r.fma(1.9875691500e-4f, 1.3981999507e-3f);
        p = p.fma(r, FloatVector.broadcast(F, 8.3334519073e-3f));
        p = p.fma(r, FloatVector.broadcast(F, 4.1665795894e-2f));
        p = p.fma(r, FloatVector.broadcast(F, 1.6666665459e-1f));
        p = p.fma(r, FloatVector.broadcast(F, 5.0000001201e-1f));
        p = p.fma(r.mul(r), r).add(1f);
        // 2^n: n + 127 in the exponent field; n = -127 (x near -88) gives +0
        IntVector bits = t.reinterpretAsInts().sub(Float.floatToRawIntBits(ROUND) - 127).lanewise(VectorOperators.LSHL, 23);
        return p.mul(bits.reinterpretAsFloats());
    }
}
