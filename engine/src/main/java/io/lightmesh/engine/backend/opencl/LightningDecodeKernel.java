package io.lightmesh.engine.backend.opencl;

import com.aparapi.Kernel;

/**
 * One recurrent lightning step for a batch of sequences: {@code S = exp(-lambda) S + k^T v; o = q S}, per sequence
 * and head. Bandwidth bound: each state element is read and written once. Math only; see {@link LightningLauncher}.
 *
 * <p>Layouts: q, k, v, out [B, H, D]; state [B, H, D, D]; decay [H].
 */
final class LightningDecodeKernel extends Kernel {
    static final int THREADS = 256;
    static final int COLS = 64;                  // state columns j per group, one per lane
    static final int SLICES = THREADS / COLS;    // row slices i per group, summed in local memory

    int batch;
    int heads;
    int dim;

    float[] q;
    float[] k;
    float[] v;
    float[] out;
    float[] state;
    float[] decay;

    @Local final float[] partial = new float[THREADS];

    /**
     * Launch: global = B * H * ceil(D/64) * THREADS, local = THREADS; group (s * H + h) * ceil(D/64) + ct owns state
     * columns ct*64.. of sequence s, head h; work-item (slice, lane) walks rows i = slice, slice + 4, ... of column
     * ct*64 + lane (consecutive lanes read consecutive columns).
     */
    @Override
    public void run() {
        int tid = getLocalId(0);
        int lane = tid % COLS;
        int slice = tid / COLS;
        int colTiles = (dim + COLS - 1) / COLS;
        int g = getGroupId(0);
        int ct = g % colTiles;
        int sh = g / colTiles;          // s * H + h
        int h = sh % heads;
        int j = ct * COLS + lane;
        int base = sh * dim;            // q, k, v, out offset of (s, h)
        float ratio = exp(-decay[h]);
        float o = 0f;
        if (j < dim) {
            float vj = v[base + j];
            int sBase = sh * dim * dim + j;
            for (int i = slice; i < dim; i += SLICES) {
                int idx = sBase + i * dim;
                float s = ratio * state[idx] + k[base + i] * vj;
                state[idx] = s;
                o += q[base + i] * s;
            }
        }
        partial[tid] = o;
        localBarrier();
        if (slice == 0 && j < dim) {
            float sum = 0f;
            for (int sl = 0; sl < SLICES; sl++) {
                sum += partial[sl * COLS + lane];
            }
            out[base + j] = sum;
        }
    }
}
