package io.lightmesh.engine.backend.opencl;

import com.aparapi.Kernel;

/**
 * Lightning attention prefill in block form (Lightning Attention-2), with every block of every head in flight at
 * once. For head h with decay lambda and blocks of m rows (a, b: row indices inside a block, from 0):
 * <pre>
 *   pass 1  KV_b     = (K_b * exp(-lambda (m_b-1-b)))^T V_b                       one D x D matrix per (h, block)
 *   pass 2  S_prev_b = running S before block b;  S = exp(-lambda m_b) S + KV_b    a scan along blocks, in place
 *   pass 3  O_b      = [(Q_b K_b^T) * M] V_b + (Q_b * exp(-lambda (a+1))) S_prev_b,  M[a,b] = exp(-lambda (a-b)), a >= b
 * </pre>
 * Math only: {@link LightningLauncher} owns the arrays and runs the three passes in order. The passes share the
 * device-only array {@link #kvb}, which is why they are one kernel class (one Aparapi instance, one set of buffers).
 *
 * <p>Layouts: q, k, v, out [total tokens, H, D], of which this launch covers tokens base..base+n-1; state [H, D, D];
 * kvb [H, nBlocks, D, D] for the blocks of this segment; decay [H].
 */
final class LightningPrefillKernel extends Kernel {
    static final int MODE_BLOCK_KV = 0;
    static final int MODE_SCAN = 1;
    static final int MODE_BLOCK_OUT = 2;

    static final int THREADS = 256;  // 16 x 16 threads (tx, ty)
    static final int KV_TILE = 64;   // pass 1: a 64 x 64 tile of KV_b per group, 4 x 4 per thread
    static final int ROWS = 64;      // pass 3: 64 rows of a block per group
    static final int COLS = 128;     // pass 3: 128 output columns per group, 4 rows x 8 columns per thread
    static final int CHUNK = 16;     // reduction chunk staged in local memory
    static final int LDQ = ROWS + 1; // padded local row strides (fewer bank conflicts)
    static final int LDP = ROWS + 1;

    int mode;
    int base;      // first token of this segment in q, k, v, out
    int n;         // tokens in this segment
    int heads;
    int dim;       // D
    int block;     // m, rows per block
    int nBlocks;   // ceil(n / m)

    float[] q;
    float[] k;
    float[] v;
    float[] out;
    float[] state;
    float[] decay;
    float[] kvb;

    @Local final float[] lQ = new float[CHUNK * LDQ];   // Q chunk [CHUNK][LDQ] (pass 1: K chunk [CHUNK][KV_TILE])
    @Local final float[] lK = new float[CHUNK * LDQ];   // K chunk [CHUNK][LDQ] (pass 1: V chunk [CHUNK][KV_TILE])
    @Local final float[] lW = new float[CHUNK * COLS];  // S_prev or V chunk [CHUNK][COLS]
    @Local final float[] lP = new float[ROWS * LDP];    // masked, decayed scores [ROWS][LDP]

    @PrivateMemorySpace(32) final float[] acc = new float[32];
    @PrivateMemorySpace(16) final float[] pacc = new float[16];
    @PrivateMemorySpace(4) final float[] ra = new float[4];
    @PrivateMemorySpace(8) final float[] rb = new float[8];
    @PrivateMemorySpace(4) final float[] rk = new float[4];

    @Override
    public void run() {
        if (mode == MODE_BLOCK_KV) {
            blockKv();
        } else if (mode == MODE_SCAN) {
            scan();
        } else {
            blockOut();
        }
    }

    /**
     * Pass 1: KV_b[i][j] = sum_r exp(-lambda (m_b-1-r)) k_r[i] v_r[j].
     * Launch: global = H * nBlocks * ceil(D/64)^2 * THREADS, local = THREADS; group ((h * nBlocks + b) * tiles + ti)
     * * tiles + tj computes rows ti*64.. and columns tj*64.. of KV_b.
     */
    private void blockKv() {
        int tid = getLocalId(0);
        int tx = tid % 16;
        int ty = tid / 16;
        int tiles = (dim + KV_TILE - 1) / KV_TILE;
        int g = getGroupId(0);
        int tj = g % tiles;
        int ti = (g / tiles) % tiles;
        int hb = g / (tiles * tiles);
        int b = hb % nBlocks;
        int h = hb / nBlocks;
        int i0 = ti * KV_TILE;
        int j0 = tj * KV_TILE;
        int mb = min(block, n - b * block);
        int rowBase = base + b * block;
        int hd = heads * dim;
        float lambda = decay[h];
        for (int e = 0; e < 16; e++) {
            acc[e] = 0f;
        }
        for (int r0 = 0; r0 < mb; r0 += CHUNK) {
            for (int l = 0; l < (CHUNK * KV_TILE) / THREADS; l++) {
                int idx = tid + l * THREADS;
                int rr = idx / KV_TILE;
                int cc = idx % KV_TILE;
                int r = r0 + rr;
                int src = (rowBase + r) * hd + h * dim;
                lQ[idx] = (r < mb && i0 + cc < dim) ? k[src + i0 + cc] * exp(-lambda * (float) (mb - 1 - r)) : 0f;
                lK[idx] = (r < mb && j0 + cc < dim) ? v[src + j0 + cc] : 0f;
            }
            localBarrier();
            for (int rr = 0; rr < CHUNK; rr++) {
                for (int a = 0; a < 4; a++) {
                    ra[a] = lQ[rr * KV_TILE + ty + 16 * a];
                }
                for (int c = 0; c < 4; c++) {
                    rk[c] = lK[rr * KV_TILE + tx + 16 * c];
                }
                for (int a = 0; a < 4; a++) {
                    for (int c = 0; c < 4; c++) {
                        acc[a * 4 + c] += ra[a] * rk[c];
                    }
                }
            }
            localBarrier();
        }
        int dd = dim * dim;
        for (int a = 0; a < 4; a++) {
            int i = i0 + ty + 16 * a;
            for (int c = 0; c < 4; c++) {
                int j = j0 + tx + 16 * c;
                if (i < dim && j < dim) {
                    kvb[(h * nBlocks + b) * dd + i * dim + j] = acc[a * 4 + c];
                }
            }
        }
    }

    /**
     * Pass 2: replaces each KV_b by the state before block b and leaves the state after the last block in state.
     * Launch: global = ceil(H * D * D / THREADS) * THREADS, local = THREADS; one work-item per state element.
     */
    private void scan() {
        int gid = getGlobalId(0);
        int dd = dim * dim;
        if (gid < heads * dd) {
            int h = gid / dd;
            int e = gid % dd;
            float lambda = decay[h];
            float s = state[gid];
            for (int b = 0; b < nBlocks; b++) {
                int mb = min(block, n - b * block);
                int idx = (h * nBlocks + b) * dd + e;
                float kv = kvb[idx];
                kvb[idx] = s;
                s = exp(-lambda * (float) mb) * s + kv;
            }
            state[gid] = s;
        }
    }

    /**
     * Pass 3: output rows of one block: the inter-block term from S_prev_b, then the causal intra-block term one
     * 64-key chunk at a time (scores masked and decayed in local memory, then multiplied by V).
     * Launch: global = H * nBlocks * ceil(m/64) * ceil(D/128) * THREADS, local = THREADS; group
     * ((h * nBlocks + b) * rowTiles + rt) * colTiles + ct computes rows rt*64.. of block b, columns ct*128..
     */
    private void blockOut() {
        int tid = getLocalId(0);
        int tx = tid % 16;
        int ty = tid / 16;
        int rowTiles = (block + ROWS - 1) / ROWS;
        int colTiles = (dim + COLS - 1) / COLS;
        int g = getGroupId(0);
        int ct = g % colTiles;
        int rt = (g / colTiles) % rowTiles;
        int hb = g / (colTiles * rowTiles);
        int b = hb % nBlocks;
        int h = hb / nBlocks;
        int mb = min(block, n - b * block);
        int rowBase = base + b * block;
        int r0 = rt * ROWS;
        int c0 = ct * COLS;
        int hd = heads * dim;
        int dd = dim * dim;
        int sBase = (h * nBlocks + b) * dd;
        float lambda = decay[h];
        if (r0 < mb) {
            for (int e = 0; e < 32; e++) {
                acc[e] = 0f;
            }
            // inter-block: (Q * exp(-lambda (a+1))) S_prev
            for (int i0 = 0; i0 < dim; i0 += CHUNK) {
                for (int l = 0; l < (ROWS * CHUNK) / THREADS; l++) {
                    int idx = tid + l * THREADS;
                    int lr = idx / CHUNK;
                    int ii = idx % CHUNK;
                    int a = r0 + lr;
                    lQ[ii * LDQ + lr] = (a < mb && i0 + ii < dim)
                            ? q[(rowBase + a) * hd + h * dim + i0 + ii] * exp(-lambda * (float) (a + 1)) : 0f;
                }
                for (int l = 0; l < (CHUNK * COLS) / THREADS; l++) {
                    int idx = tid + l * THREADS;
                    int ii = idx / COLS;
                    int cc = idx % COLS;
                    lW[idx] = (i0 + ii < dim && c0 + cc < dim) ? kvb[sBase + (i0 + ii) * dim + c0 + cc] : 0f;
                }
                localBarrier();
                for (int ii = 0; ii < CHUNK; ii++) {
                    for (int a = 0; a < 4; a++) {
                        ra[a] = lQ[ii * LDQ + ty + 16 * a];
                    }
                    for (int c = 0; c < 8; c++) {
                        rb[c] = lW[ii * COLS + tx + 16 * c];
                    }
                    for (int a = 0; a < 4; a++) {
                        for (int c = 0; c < 8; c++) {
                            acc[a * 8 + c] += ra[a] * rb[c];
                        }
                    }
                }
                localBarrier();
            }
            // intra-block, causal: key chunks up to the tile's last row
            int rowEnd = min(r0 + ROWS, mb);
            for (int kc0 = 0; kc0 < rowEnd; kc0 += ROWS) {
                for (int e = 0; e < 16; e++) {
                    pacc[e] = 0f;
                }
                for (int i0 = 0; i0 < dim; i0 += CHUNK) {
                    for (int l = 0; l < (ROWS * CHUNK) / THREADS; l++) {
                        int idx = tid + l * THREADS;
                        int lr = idx / CHUNK;
                        int ii = idx % CHUNK;
                        int a = r0 + lr;
                        int kb = kc0 + lr;
                        lQ[ii * LDQ + lr] = (a < mb && i0 + ii < dim) ? q[(rowBase + a) * hd + h * dim + i0 + ii] : 0f;
                        lK[ii * LDQ + lr] = (kb < mb && i0 + ii < dim) ? k[(rowBase + kb) * hd + h * dim + i0 + ii] : 0f;
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
                                pacc[a * 4 + c] += ra[a] * rk[c];
                            }
                        }
                    }
                    localBarrier();
                }
                for (int a = 0; a < 4; a++) {
                    int row = r0 + ty + 16 * a;
                    for (int c = 0; c < 4; c++) {
                        int key = kc0 + tx + 16 * c;
                        float p = 0f;
                        if (key <= row && row < mb) {
                            p = pacc[a * 4 + c] * exp(-lambda * (float) (row - key));
                        }
                        lP[(ty + 16 * a) * LDP + tx + 16 * c] = p;
                    }
                }
                localBarrier();
                for (int kk0 = 0; kk0 < ROWS; kk0 += CHUNK) {
                    for (int l = 0; l < (CHUNK * COLS) / THREADS; l++) {
                        int idx = tid + l * THREADS;
                        int kk = idx / COLS;
                        int cc = idx % COLS;
                        int key = kc0 + kk0 + kk;
                        lW[idx] = (key < mb && c0 + cc < dim) ? v[(rowBase + key) * hd + h * dim + c0 + cc] : 0f;
                    }
                    localBarrier();
                    for (int kk = 0; kk < CHUNK; kk++) {
                        for (int a = 0; a < 4; a++) {
                            ra[a] = lP[(ty + 16 * a) * LDP + kk0 + kk];
                        }
                        for (int c = 0; c < 8; c++) {
                            rb[c] = lW[kk * COLS + tx + 16 * c];
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
                int row = r0 + ty + 16 * a;
                for (int c = 0; c < 8; c++) {
                    int col = c0 + tx + 16 * c;
                    if (row < mb && col < dim) {
                        out[(rowBase + row) * hd + h * dim + col] = acc[a * 8 + c];
                    }
                }
            }
        }
    }
}
