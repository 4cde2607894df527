package io.lightmesh.engine.backend.opencl;

import com.aparapi.Kernel;

/**
 * {@code y[n, out] = x[n, in] . W^T} with W in the checkpoint's [out, in] layout, read from a device-resident weight
 * slab (fp32, or bf16 kept as raw 16-bit and widened here). Math only: {@link MatmulLauncher} owns the slab, the
 * activation arrays, ranges and transfers.
 *
 * <p>Both passes live in one Aparapi kernel class on purpose: Aparapi gives every kernel instance its own OpenCL
 * context and buffers, so the tiled and the matrix-vector path can share one copy of the weights on the device only by
 * being one kernel instance, told apart by {@link #mode}.
 *
 * <p>Aparapi cannot translate {@code Float.intBitsToFloat}, so bf16 is widened arithmetically:
 * {@code value = sign * (128 + mantissa) * 2^(exponent - 134)} with the powers of two from a 256-entry table
 * ({@link #pow2}) staged in local memory. Infinities and NaNs (exponent 255) are not preserved; weights have none.
 */
final class MatmulKernel extends Kernel {
    static final int MODE_TILED = 0;
    static final int MODE_MATVEC = 1;

    /** Work-group size of both passes. */
    static final int THREADS = 256;

    // Tiled pass: a BM x BN tile of y per work-group of 16 x 16 threads, each thread an 8 x 8 register tile
    // (rows ty + 16 i, columns tx + 16 j: a warp reads 2 distinct A addresses and 16 consecutive B addresses per step).
    static final int BM = 128;
    static final int BN = 128;
    static final int BK = 16;
    static final int TM = 8;
    static final int TN = 8;
    static final int PAD = 4;
    static final int LDA = BM + PAD; // local row stride of the transposed A tile: [BK][LDA]
    static final int LDB = BN + PAD; // [BK][LDB]

    // Matrix-vector pass: one warp-sized lane group per output row, MV_ROWS rows per work-group.
    static final int MV_LANES = 32;
    static final int MV_ROWS = THREADS / MV_LANES;
    /** Largest n the matrix-vector pass takes (one accumulator per token). */
    static final int MV_MAX_N = 8;

    int mode;
    int n;      // tokens (rows of x and y)
    int in;     // reduction length
    int out;    // output features (rows of W)
    int wOff;   // offset of W[0][0] in the slab
    int bf16;   // 1: the slab is wBf16, 0: wF32

    float[] wF32;   // fp32 slab (a 1-element dummy when the slab is bf16)
    char[] wBf16;   // bf16 slab as raw bits (a 1-element dummy when the slab is fp32)
    float[] pow2;   // [256] 2^(max(e,1) - 134)
    float[] x;      // [n, in]
    float[] y;      // [n, out]

    @Local final float[] tileA = new float[BK * LDA];    // tiled: A^T tile; matvec: lane partial sums
    @Local final float[] tileB = new float[BK * LDB];
    @Local final float[] pow2Local = new float[256];

    @PrivateMemorySpace(TM * TN) final float[] acc = new float[TM * TN];
    @PrivateMemorySpace(TM) final float[] ra = new float[TM];
    @PrivateMemorySpace(TN) final float[] rb = new float[TN];

    @Override
    public void run() {
        if (mode == MODE_TILED) {
            tiled();
        } else {
            matvec();
        }
    }

    /** Element {@code i} of the slab as fp32; bf16 needs {@link #pow2Local} filled. */
    private float weight(int i) {
        float v = 0f;
        if (bf16 != 0) {
            int b = wBf16[i];
            int e = (b >> 7) & 0xff;
            float mag = (float) ((b & 0x7f) + (e == 0 ? 0 : 128)) * pow2Local[e];
            v = (b & 0x8000) != 0 ? -mag : mag;
        } else {
            v = wF32[i];
        }
        return v;
    }

    private void stagePow2(int tid) {
        if (bf16 != 0 && tid < 256) {
            pow2Local[tid] = pow2[tid];
        }
        localBarrier();
    }

    /**
     * Tiled product for n > {@link #MV_MAX_N} (prefill).
     * Launch: global = ceil(n/BM) * ceil(out/BN) * THREADS, local = THREADS; group g covers rows
     * (g / ceil(out/BN)) * BM and columns (g % ceil(out/BN)) * BN.
     */
    private void tiled() {
        int tid = getLocalId(0);
        int tilesN = (out + BN - 1) / BN;
        int g = getGroupId(0);
        int m0 = (g / tilesN) * BM;
        int n0 = (g % tilesN) * BN;
        int tx = tid % 16;
        int ty = tid / 16;
        stagePow2(tid);
        for (int i = 0; i < TM * TN; i++) {
            acc[i] = 0f;
        }
        for (int k0 = 0; k0 < in; k0 += BK) {
            // Stage A (x rows m0.., BM x BK) and B (W rows n0.., BN x BK) transposed: 16 consecutive threads read 16
            // consecutive k of one row (coalesced), and store into column r of the [BK][LD] tiles.
            for (int l = 0; l < (BM * BK) / THREADS; l++) {
                int idx = tid + l * THREADS;
                int r = idx / BK;
                int c = idx % BK;
                int gm = m0 + r;
                int gk = k0 + c;
                tileA[c * LDA + r] = (gm < n && gk < in) ? x[gm * in + gk] : 0f;
            }
            for (int l = 0; l < (BN * BK) / THREADS; l++) {
                int idx = tid + l * THREADS;
                int r = idx / BK;
                int c = idx % BK;
                int gn = n0 + r;
                int gk = k0 + c;
                tileB[c * LDB + r] = (gn < out && gk < in) ? weight(wOff + gn * in + gk) : 0f;
            }
            localBarrier();
            for (int kk = 0; kk < BK; kk++) {
                for (int i = 0; i < TM; i++) {
                    ra[i] = tileA[kk * LDA + ty + 16 * i];
                }
                for (int j = 0; j < TN; j++) {
                    rb[j] = tileB[kk * LDB + tx + 16 * j];
                }
                for (int i = 0; i < TM; i++) {
                    for (int j = 0; j < TN; j++) {
                        acc[i * TN + j] += ra[i] * rb[j];
                    }
                }
            }
            localBarrier();
        }
        for (int i = 0; i < TM; i++) {
            int gm = m0 + ty + 16 * i;
            for (int j = 0; j < TN; j++) {
                int gn = n0 + tx + 16 * j;
                if (gm < n && gn < out) {
                    y[gm * out + gn] = acc[i * TN + j];
                }
            }
        }
    }

    /**
     * Matrix-vector product for n <= {@link #MV_MAX_N} (decode): weight-bandwidth bound, each weight read once.
     * Launch: global = ceil(out/MV_ROWS) * THREADS, local = THREADS; lane group r of group g owns row g*MV_ROWS + r,
     * its 32 lanes stride over in (four independent loads in flight per lane), then one lane per token sums the 32
     * partials from local memory.
     */
    private void matvec() {
        int tid = getLocalId(0);
        int lane = tid % MV_LANES;
        int rl = tid / MV_LANES;
        int row = getGroupId(0) * MV_ROWS + rl;
        stagePow2(tid);
        for (int t = 0; t < MV_MAX_N; t++) {
            acc[t] = 0f;
        }
        if (row < out) {
            int wRow = wOff + row * in;
            for (int i0 = 0; i0 < in; i0 += 4 * MV_LANES) {
                int i1 = i0 + lane;
                int i2 = i1 + MV_LANES;
                int i3 = i2 + MV_LANES;
                int i4 = i3 + MV_LANES;
                float w1 = i1 < in ? weight(wRow + i1) : 0f;
                float w2 = i2 < in ? weight(wRow + i2) : 0f;
                float w3 = i3 < in ? weight(wRow + i3) : 0f;
                float w4 = i4 < in ? weight(wRow + i4) : 0f;
                for (int t = 0; t < MV_MAX_N; t++) {
                    if (t < n) {
                        int xo = t * in;
                        float s = (i1 < in ? w1 * x[xo + i1] : 0f) + (i2 < in ? w2 * x[xo + i2] : 0f);
                        s += (i3 < in ? w3 * x[xo + i3] : 0f) + (i4 < in ? w4 * x[xo + i4] : 0f);
                        acc[t] += s;
                    }
                }
            }
        }
        for (int t = 0; t < MV_MAX_N; t++) {
            tileA[(rl * MV_MAX_N + t) * MV_LANES + lane] = acc[t];
        }
        localBarrier();
        if (lane < n && row < out) {
            float s = 0f;
            int base = (rl * MV_MAX_N + lane) * MV_LANES;
            for (int l = 0; l < MV_LANES; l++) {
                s += tileA[base + l];
            }
            y[lane * out + row] = s;
        }
    }
}
