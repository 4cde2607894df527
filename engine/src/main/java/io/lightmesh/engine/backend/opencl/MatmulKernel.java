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
 * <p>bf16 is widened by a bit cast: its 16 bits become the high half of an fp32 ({@link #asFloat}, OpenCL's
 * {@code as_float}), exactly what the checkpoint's bf16 means.
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

    static final int LOADS = (BM * BK) / THREADS; // tile elements each work-item stages per step (same for B)

    // Matrix-vector pass: MV_LANES work-items per output row, MV_ROWS rows per work-group, MV_UNROLL independent
    // weight loads in flight per work-item.
    static final int MV_LANES = 64;
    static final int MV_ROWS = THREADS / MV_LANES;
    static final int MV_UNROLL = 8;
    static final int MV_STEP = MV_LANES * MV_UNROLL;
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
    float[] x;      // [n, in]
    float[] y;      // [n, out]

    @Local final float[] tileA = new float[BK * LDA];    // tiled: A^T tile; matvec: lane partial sums
    @Local final float[] tileB = new float[BK * LDB];

    @PrivateMemorySpace(TM * TN) final float[] acc = new float[TM * TN];
    @PrivateMemorySpace(TM) final float[] ra = new float[TM];
    @PrivateMemorySpace(TN) final float[] rb = new float[TN];
    @PrivateMemorySpace(LOADS) final float[] ga = new float[LOADS];  // next A tile, in flight during the products
    @PrivateMemorySpace(LOADS) final float[] gb = new float[LOADS];  // next B tile; matvec: the unrolled weights

    @Override
    public void run() {
        if (mode == MODE_TILED) {
            tiled();
        } else {
            matvec();
        }
    }

    /**
     * The fp32 whose bits are {@code bits}. Aparapi emits OpenCL's {@code as_float} for it; the Java body never runs,
     * because {@link DeviceRuntime} refuses Aparapi's Java fallback (and Aparapi cannot translate the native
     * {@code Float.intBitsToFloat}, which is why this method exists).
     */
    @OpenCLMapping(mapTo = "as_float")
    protected float asFloat(int bits) {
        return 0f;
    }

    /** Element {@code i} of the slab as fp32. */
    private float weight(int i) {
        return bf16 != 0 ? asFloat(wBf16[i] << 16) : wF32[i];
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
        for (int i = 0; i < TM * TN; i++) {
            acc[i] = 0f;
        }
        fetchTiles(tid, m0, n0, 0);
        for (int k0 = 0; k0 < in; k0 += BK) {
            // Stage the fetched tiles transposed ([BK][LD]: column r of the tile is row m0 + r of x or n0 + r of W),
            // then fetch the next ones so that their global loads are in flight during the products.
            for (int l = 0; l < LOADS; l++) {
                int idx = tid + l * THREADS;
                tileA[(idx % BK) * LDA + idx / BK] = ga[l];
                tileB[(idx % BK) * LDB + idx / BK] = gb[l];
            }
            localBarrier();
            if (k0 + BK < in) {
                fetchTiles(tid, m0, n0, k0 + BK);
            }
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
     * Loads the BM x BK tile of x at (m0, k0) and the BN x BK tile of W at (n0, k0) into {@link #ga} and {@link #gb}:
     * 16 consecutive work-items read 16 consecutive k of one row (coalesced); outside the matrices reads 0.
     */
    private void fetchTiles(int tid, int m0, int n0, int k0) {
        // the dtype test stays outside the loops, so each loop is straight loads the compiler can issue together
        for (int l = 0; l < LOADS; l++) {
            int idx = tid + l * THREADS;
            int r = idx / BK;
            int gk = k0 + idx % BK;
            ga[l] = (m0 + r < n && gk < in) ? x[(m0 + r) * in + gk] : 0f;
        }
        if (bf16 != 0) {
            for (int l = 0; l < LOADS; l++) {
                int idx = tid + l * THREADS;
                int r = idx / BK;
                int gk = k0 + idx % BK;
                gb[l] = (n0 + r < out && gk < in) ? asFloat(wBf16[wOff + (n0 + r) * in + gk] << 16) : 0f;
            }
        } else {
            for (int l = 0; l < LOADS; l++) {
                int idx = tid + l * THREADS;
                int r = idx / BK;
                int gk = k0 + idx % BK;
                gb[l] = (n0 + r < out && gk < in) ? wF32[wOff + (n0 + r) * in + gk] : 0f;
            }
        }
    }

    /**
     * Matrix-vector product for n <= {@link #MV_MAX_N} (decode): weight-bandwidth bound, each weight read once.
     * Launch: global = ceil(out/MV_ROWS) * THREADS, local = THREADS; the MV_LANES work-items of row slot r of group g
     * own row g*MV_ROWS + r: each takes elements lane, lane + MV_LANES, ... (MV_UNROLL loads issued together, then the
     * products), and one work-item per token sums the row's MV_LANES partials from local memory.
     */
    private void matvec() {
        int tid = getLocalId(0);
        int lane = tid % MV_LANES;
        int rl = tid / MV_LANES;
        int row = getGroupId(0) * MV_ROWS + rl;
        for (int t = 0; t < MV_MAX_N; t++) {
            acc[t] = 0f;
        }
        if (row < out) {
            int wRow = wOff + row * in;
            int full = (in / MV_STEP) * MV_STEP;
            for (int i0 = 0; i0 < full; i0 += MV_STEP) {
                if (bf16 != 0) {
                    for (int u = 0; u < MV_UNROLL; u++) {
                        gb[u] = asFloat(wBf16[wRow + i0 + lane + u * MV_LANES] << 16);
                    }
                } else {
                    for (int u = 0; u < MV_UNROLL; u++) {
                        gb[u] = wF32[wRow + i0 + lane + u * MV_LANES];
                    }
                }
                for (int t = 0; t < MV_MAX_N; t++) {
                    if (t < n) {
                        int xo = t * in + i0 + lane;
                        float s = 0f;
                        for (int u = 0; u < MV_UNROLL; u++) {
                            s += gb[u] * x[xo + u * MV_LANES];
                        }
                        acc[t] += s;
                    }
                }
            }
            for (int i = full + lane; i < in; i += MV_LANES) {
                float w = weight(wRow + i);
                for (int t = 0; t < MV_MAX_N; t++) {
                    if (t < n) {
                        acc[t] += w * x[t * in + i];
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
