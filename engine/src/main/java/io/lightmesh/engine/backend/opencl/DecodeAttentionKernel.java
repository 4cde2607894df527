package io.lightmesh.engine.backend.opencl;

import com.aparapi.Kernel;

/**
 * Causal softmax attention with GQA for a few queries over a long cache (decode), split along the sequence:
 * pass 1 gives every (kv head, split) its own work-group, which reads its keys and values once for all the query heads
 * of the group (G = H/KV heads times n queries = R rows) and leaves an unnormalised partial (o, m, l); pass 2 merges
 * the partials of each row. Bandwidth bound: K and V are read once. Math only; see {@link AttentionLauncher}.
 *
 * <p>Layouts: q, out [n, H, D]; kc, vc [T, KV, D]; part [KV, splits, R, D + 2] (o, then m and l).
 * Limits (checked by the launcher): D <= {@link #MAX_DIM}, R <= {@link #MAX_ROWS}, R * D <= {@link #MAX_RD}.
 */
final class DecodeAttentionKernel extends Kernel {
    static final int MODE_SPLIT = 0;
    static final int MODE_COMBINE = 1;

    static final int THREADS = 256;
    static final int KEYS = 32;                  // keys per step
    static final int MAX_DIM = 128;
    static final int MAX_ROWS = 64;
    static final int MAX_RD = 4096;              // R * D accumulators, 16 per work-item
    static final int PER_ITEM = MAX_RD / THREADS;
    static final int KV_LOADS = KEYS * MAX_DIM / THREADS;  // key (and value) elements each work-item stages per step
    static final int LDS = KEYS + 1;
    static final float NEG = -1e30f;

    int mode;
    int n;
    int heads;
    int kvHeads;
    int dim;
    int start;
    int splits;
    int splitLen;   // keys per split, a multiple of KEYS
    float scale;

    float[] q;
    float[] kc;
    float[] vc;
    float[] out;
    float[] part;

    @Local final float[] lQ = new float[MAX_RD];                  // [R][D] queries, pre-scaled
    @Local final float[] lKV = new float[KEYS * (MAX_DIM + 1)];   // [KEYS][D + 1] keys, then values
    @Local final float[] lS = new float[MAX_ROWS * LDS];          // [R][LDS] scores, then probabilities
    @Local final float[] lM = new float[MAX_ROWS];
    @Local final float[] lL = new float[MAX_ROWS];
    @Local final float[] lA = new float[MAX_ROWS];

    @PrivateMemorySpace(PER_ITEM) final float[] acc = new float[PER_ITEM];
    @PrivateMemorySpace(KV_LOADS) final float[] rk = new float[KV_LOADS];  // next keys, in flight during the math
    @PrivateMemorySpace(KV_LOADS) final float[] rv = new float[KV_LOADS];  // next values

    @Override
    public void run() {
        if (mode == MODE_SPLIT) {
            split();
        } else {
            combine();
        }
    }

    /**
     * Pass 1. Launch: global = KV * splits * THREADS, local = THREADS; group kvh * splits + sp covers keys
     * sp*splitLen .. min((sp+1)*splitLen, start+n) - 1. Row r of the group is query r / G of head kvh*G + r % G;
     * work-item slot u holds output element (tid + 256 u) of the [R][D] rows.
     */
    private void split() {
        int tid = getLocalId(0);
        int g = getGroupId(0);
        int sp = g % splits;
        int kvh = g / splits;
        int grp = heads / kvHeads;
        int rows = n * grp;
        int rd = rows * dim;
        int kvd = kvHeads * dim;
        int ld = dim + 1;
        int k0 = sp * splitLen;
        int k1 = min(k0 + splitLen, start + n);
        for (int l = 0; l < PER_ITEM; l++) {
            int idx = tid + l * THREADS;
            if (idx < rd) {
                int r = idx / dim;
                int i = idx % dim;
                int h = kvh * grp + r % grp;
                lQ[idx] = q[((r / grp) * heads + h) * dim + i] * scale;
            }
            acc[l] = 0f;
        }
        if (tid < MAX_ROWS) {
            lM[tid] = NEG;
            lL[tid] = 0f;
        }
        localBarrier();
        fetch(tid, kvh, k0, k1);
        for (int p0 = k0; p0 < k1; p0 += KEYS) {
            // keys of this step into local memory (the values stay in registers until the scores are done)
            for (int l = 0; l < KV_LOADS; l++) {
                int idx = tid + l * THREADS;
                if (idx < KEYS * dim) {
                    lKV[(idx / dim) * ld + idx % dim] = rk[l];
                }
            }
            localBarrier();
            for (int l = 0; l < (MAX_ROWS * KEYS) / THREADS; l++) {
                int idx = tid + l * THREADS;
                int r = idx / KEYS;
                int c = idx % KEYS;
                if (r < rows) {
                    int p = p0 + c;
                    float s = 0f;
                    for (int i = 0; i < dim; i++) {
                        s += lQ[r * dim + i] * lKV[c * ld + i];
                    }
                    lS[r * LDS + c] = (p < k1 && p <= start + r / grp) ? s : NEG;
                }
            }
            localBarrier();
            if (tid < rows) {
                float mOld = lM[tid];
                float mNew = mOld;
                for (int c = 0; c < KEYS; c++) {
                    mNew = max(mNew, lS[tid * LDS + c]);
                }
                float sum = 0f;
                for (int c = 0; c < KEYS; c++) {
                    float s = lS[tid * LDS + c];
                    float e = s > NEG * 0.5f ? exp(s - mNew) : 0f;
                    lS[tid * LDS + c] = e;
                    sum += e;
                }
                float alpha = exp(mOld - mNew);
                lA[tid] = alpha;
                lL[tid] = lL[tid] * alpha + sum;
                lM[tid] = mNew;
            }
            // Not needed by the OpenCL memory model (what follows touches only lKV and registers), but PoCL 3.1
            // drops the statistics block above without it.
            localBarrier();
            for (int l = 0; l < KV_LOADS; l++) {
                int idx = tid + l * THREADS;
                if (idx < KEYS * dim) {
                    lKV[(idx / dim) * ld + idx % dim] = rv[l];
                }
            }
            if (p0 + KEYS < k1) {
                fetch(tid, kvh, p0 + KEYS, k1);
            }
            localBarrier();
            for (int l = 0; l < PER_ITEM; l++) {
                int idx = tid + l * THREADS;
                if (idx < rd) {
                    int r = idx / dim;
                    int j = idx % dim;
                    float o = acc[l] * lA[r];
                    for (int c = 0; c < KEYS; c++) {
                        o += lS[r * LDS + c] * lKV[c * ld + j];
                    }
                    acc[l] = o;
                }
            }
            localBarrier();
        }
        // m and l go out with element 0 of their row, from the same loop: a separate trailing "if (tid < rows)"
        // store was lost for some groups on PoCL 3.1 with more than one thread.
        int pBase = (kvh * splits + sp) * rows * (dim + 2);
        for (int l = 0; l < PER_ITEM; l++) {
            int idx = tid + l * THREADS;
            if (idx < rd) {
                int r = idx / dim;
                int j = idx % dim;
                part[pBase + r * (dim + 2) + j] = acc[l];
                if (j == 0) {
                    part[pBase + r * (dim + 2) + dim] = lM[r];
                    part[pBase + r * (dim + 2) + dim + 1] = lL[r];
                }
            }
        }
    }

    /** Loads the keys and values of positions p0..p0+KEYS-1 (0 past k1) into {@link #rk} and {@link #rv}. */
    private void fetch(int tid, int kvh, int p0, int k1) {
        int kvd = kvHeads * dim;
        for (int l = 0; l < KV_LOADS; l++) {
            int idx = tid + l * THREADS;
            int p = p0 + idx / dim;
            int src = p * kvd + kvh * dim + idx % dim;
            boolean in = idx < KEYS * dim && p < k1;
            rk[l] = in ? kc[src] : 0f;
            rv[l] = in ? vc[src] : 0f;
        }
    }

    /**
     * Pass 2. Launch: global = ceil(KV * R * D / THREADS) * THREADS, local = THREADS; work-item (kvh, r, j) merges
     * the splits' partials of output element j of row r: out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s.
     */
    private void combine() {
        int gid = getGlobalId(0);
        int grp = heads / kvHeads;
        int rows = n * grp;
        if (gid < kvHeads * rows * dim) {
            int j = gid % dim;
            int r = (gid / dim) % rows;
            int kvh = gid / (dim * rows);
            int stride = rows * (dim + 2);
            int base = kvh * splits * stride + r * (dim + 2);
            float m = NEG;
            for (int s = 0; s < splits; s++) {
                m = max(m, part[base + s * stride + dim]);
            }
            float num = 0f;
            float den = 0f;
            for (int s = 0; s < splits; s++) {
                int o = base + s * stride;
                float w = exp(part[o + dim] - m);
                num += w * part[o + j];
                den += w * part[o + dim + 1];
            }
            int h = kvh * grp + r % grp;
            out[((r / grp) * heads + h) * dim + j] = num / den;
        }
    }
}
