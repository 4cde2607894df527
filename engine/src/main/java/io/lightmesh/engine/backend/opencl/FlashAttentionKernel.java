package io.lightmesh.engine.backend.opencl;

import com.aparapi.Kernel;

/**
 * Causal softmax attention with GQA for a block of queries (prefill), flash style: keys and values stream through
 * local memory 64 at a time and the softmax is kept online (running max m, running sum l, output rescaled by
 * exp(m_old - m_new)), so the n x T score matrix never exists. Math only; see {@link AttentionLauncher}.
 *
 * <p>Layouts: q, out [n, H, D]; kc, vc [T, KV, D]; query t sits at position start + t and sees keys 0..start+t.
 */
final class FlashAttentionKernel extends Kernel {
    static final int THREADS = 256;  // 16 x 16 threads (tx, ty)
    static final int ROWS = 64;      // queries per group, 4 per thread (rows ty + 16 a)
    static final int KEYS = 64;      // keys per step, 4 scores per thread (keys tx + 16 c)
    static final int COLS = 128;     // output columns per group, 8 per thread (columns tx + 16 c)
    static final int CHUNK = 16;
    static final int LDQ = ROWS + 1;
    static final int LDP = KEYS + 1;
    static final float NEG = -1e30f; // masked score; finite so that exp(NEG - NEG) stays 1, never NaN

    int n;
    int heads;
    int kvHeads;
    int dim;
    int start;
    float scale;

    float[] q;
    float[] kc;
    float[] vc;
    float[] out;

    @Local final float[] lQ = new float[CHUNK * LDQ];   // [CHUNK][LDQ] query chunk, transposed
    @Local final float[] lK = new float[CHUNK * LDQ];   // [CHUNK][LDQ] key chunk, transposed
    @Local final float[] lV = new float[CHUNK * COLS];  // [CHUNK][COLS] value rows
    @Local final float[] lP = new float[ROWS * LDP];    // [ROWS][LDP] scores, then probabilities
    @Local final float[] lM = new float[ROWS];          // running max per query
    @Local final float[] lL = new float[ROWS];          // running sum per query
    @Local final float[] lA = new float[ROWS];          // rescale factor of this step

    @PrivateMemorySpace(32) final float[] acc = new float[32];
    @PrivateMemorySpace(16) final float[] sacc = new float[16];
    @PrivateMemorySpace(4) final float[] ra = new float[4];
    @PrivateMemorySpace(8) final float[] rb = new float[8];
    @PrivateMemorySpace(4) final float[] rk = new float[4];

    /**
     * Launch: global = H * ceil(n/64) * ceil(D/128) * THREADS, local = THREADS; group (h * qTiles + qt) * colTiles + ct
     * computes queries qt*64.. of head h, output columns ct*128.., over keys 0..start + min(qt*64 + 63, n - 1).
     */
    @Override
    public void run() {
        int tid = getLocalId(0);
        int tx = tid % 16;
        int ty = tid / 16;
        int qTiles = (n + ROWS - 1) / ROWS;
        int colTiles = (dim + COLS - 1) / COLS;
        int g = getGroupId(0);
        int ct = g % colTiles;
        int qt = (g / colTiles) % qTiles;
        int h = g / (colTiles * qTiles);
        int kvh = h / (heads / kvHeads);
        int r0 = qt * ROWS;
        int c0 = ct * COLS;
        int hd = heads * dim;
        int kvd = kvHeads * dim;
        int lastKey = start + min(r0 + ROWS, n) - 1;
        if (tid < ROWS) {
            lM[tid] = NEG;
            lL[tid] = 0f;
        }
        for (int e = 0; e < 32; e++) {
            acc[e] = 0f;
        }
        localBarrier();
        for (int p0 = 0; p0 <= lastKey; p0 += KEYS) {
            // scores S = Q K^T over D, 16 dims at a time
            for (int e = 0; e < 16; e++) {
                sacc[e] = 0f;
            }
            for (int i0 = 0; i0 < dim; i0 += CHUNK) {
                for (int l = 0; l < (ROWS * CHUNK) / THREADS; l++) {
                    int idx = tid + l * THREADS;
                    int lr = idx / CHUNK;
                    int ii = idx % CHUNK;
                    int t = r0 + lr;
                    int p = p0 + lr;
                    lQ[ii * LDQ + lr] = (t < n && i0 + ii < dim) ? q[t * hd + h * dim + i0 + ii] : 0f;
                    lK[ii * LDQ + lr] = (p <= lastKey && i0 + ii < dim) ? kc[p * kvd + kvh * dim + i0 + ii] : 0f;
                }
                localBarrier();
                for (int ii = 0; ii < CHUNK; ii++) {
                    for (int a = 0; a < 4; a++) {
                        ra[a] = lQ[ii * LDQ + ty + 16 * a];
                    }
                    for (int c = 0; c < 4; c++) {
                        rk[c] = lK[ii * LDQ + tx + 16 * c];
                    }
                    for (int a = 0; a < 4; a++) {
                        for (int c = 0; c < 4; c++) {
                            sacc[a * 4 + c] += ra[a] * rk[c];
                        }
                    }
                }
                localBarrier();
            }
            for (int a = 0; a < 4; a++) {
                int t = r0 + ty + 16 * a;
                for (int c = 0; c < 4; c++) {
                    int p = p0 + tx + 16 * c;
                    lP[(ty + 16 * a) * LDP + tx + 16 * c] = (t < n && p <= start + t) ? sacc[a * 4 + c] * scale : NEG;
                }
            }
            localBarrier();
            // online softmax statistics, one work-item per query row
            if (tid < ROWS) {
                float mOld = lM[tid];
                float mNew = mOld;
                for (int c = 0; c < KEYS; c++) {
                    mNew = max(mNew, lP[tid * LDP + c]);
                }
                float sum = 0f;
                for (int c = 0; c < KEYS; c++) {
                    float s = lP[tid * LDP + c];
                    float e = s > NEG * 0.5f ? exp(s - mNew) : 0f;
                    lP[tid * LDP + c] = e;
                    sum += e;
                }
                float alpha = exp(mOld - mNew);
                lA[tid] = alpha;
                lL[tid] = lL[tid] * alpha + sum;
                lM[tid] = mNew;
            }
            localBarrier();
            for (int a = 0; a < 4; a++) {
                float alpha = lA[ty + 16 * a];
                for (int c = 0; c < 8; c++) {
                    acc[a * 8 + c] *= alpha;
                }
            }
            // O += P V, 16 keys at a time
            for (int kk0 = 0; kk0 < KEYS; kk0 += CHUNK) {
                for (int l = 0; l < (CHUNK * COLS) / THREADS; l++) {
                    int idx = tid + l * THREADS;
                    int kk = idx / COLS;
                    int cc = idx % COLS;
                    int p = p0 + kk0 + kk;
                    lV[idx] = (p <= lastKey && c0 + cc < dim) ? vc[p * kvd + kvh * dim + c0 + cc] : 0f;
                }
                localBarrier();
                for (int kk = 0; kk < CHUNK; kk++) {
                    for (int a = 0; a < 4; a++) {
                        ra[a] = lP[(ty + 16 * a) * LDP + kk0 + kk];
                    }
                    for (int c = 0; c < 8; c++) {
                        rb[c] = lV[kk * COLS + tx + 16 * c];
                    }
                    for (int a = 0; a < 4; a++) {
                        for (int c = 0; c < 8; c++) {
                            acc[a * 8 + c] += ra[a] * rb[c];
                        }
                    }
                }
                localBarrier();
            }
        }
        for (int a = 0; a < 4; a++) {
            int lr = ty + 16 * a;
            int t = r0 + lr;
            float inv = 1f / lL[lr];
            for (int c = 0; c < 8; c++) {
                int col = c0 + tx + 16 * c;
                if (t < n && col < dim) {
                    out[t * hd + h * dim + col] = acc[a * 8 + c] * inv;
                }
            }
        }
    }
}
