// Kernels of the device-resident decode path (ResidentOps launches them). Math only: buffers, ranges and offsets
// belong to the launcher. Row-major fp32 activations; weights fp32 or bf16 (raw 16 bits, widened by a shift).
// Every kernel states its launch shape. NT is the work-group size of all of them.

#define NT 256

// ---- matrix-vector products (decode: weight-bandwidth bound, each weight row read once per launch) ---------------
// MV_LANES work-items share one weight row; a work-group holds MV_ROWS rows. Each work-item keeps up to MAXN dot
// products (tokens of the step, or the pairs routed to one expert) and, on the vector paths, four 16-byte weight
// loads in flight per iteration. The lanes' partial sums are added by a tree in local memory.

#define MV_LANES 64
#define MV_ROWS (NT / MV_LANES)
#define MAXN 8

inline float8 widen8(ushort8 u) { return as_float8(convert_uint8(u) << (uint8) 16); }
inline float widen(ushort u) { return as_float(((uint) u) << 16); }

// acc[p] += W_row . x[xr[p]] for p < np; fp32 weights as float4 (in % 4 == 0: rows and x rows 16-byte aligned)
inline void dot_f32v(__global const float* wrow, __global const float* x, int in, const int* xr, int np, int lane,
                     float* acc) {
    __global const float4* w4 = (__global const float4*) wrow;
    __global const float4* x4 = (__global const float4*) x;
    int in4 = in >> 2;
    int i = lane;
    for (; i + 3 * MV_LANES < in4; i += 4 * MV_LANES) {
        float4 a = w4[i], b = w4[i + MV_LANES], c = w4[i + 2 * MV_LANES], d = w4[i + 3 * MV_LANES];
        for (int p = 0; p < MAXN; p++) {
            if (p < np) {
                __global const float4* xp = x4 + (long) xr[p] * in4;
                acc[p] += dot(a, xp[i]) + dot(b, xp[i + MV_LANES]) + dot(c, xp[i + 2 * MV_LANES])
                        + dot(d, xp[i + 3 * MV_LANES]);
            }
        }
    }
    for (; i < in4; i += MV_LANES) {
        float4 a = w4[i];
        for (int p = 0; p < MAXN; p++) {
            if (p < np) acc[p] += dot(a, x4[(long) xr[p] * in4 + i]);
        }
    }
}

// the same with bf16 weights as ushort8 (in % 8 == 0)
inline void dot_bf16v(__global const ushort* wrow, __global const float* x, int in, const int* xr, int np, int lane,
                      float* acc) {
    __global const ushort8* w8 = (__global const ushort8*) wrow;
    __global const float8* x8 = (__global const float8*) x;
    int in8 = in >> 3;
    int i = lane;
    for (; i + 3 * MV_LANES < in8; i += 4 * MV_LANES) {
        // the loads stay raw (4 registers each) until used: widened up front they held 32 registers, which cut the
        // work-items resident per compute unit and with them the bytes in flight
        ushort8 a = w8[i], b = w8[i + MV_LANES], c = w8[i + 2 * MV_LANES], d = w8[i + 3 * MV_LANES];
        for (int p = 0; p < MAXN; p++) {
            if (p < np) {
                __global const float8* xp = x8 + (long) xr[p] * in8;
                float8 s = widen8(a) * xp[i];
                s = fma(widen8(b), xp[i + MV_LANES], s);
                s = fma(widen8(c), xp[i + 2 * MV_LANES], s);
                s = fma(widen8(d), xp[i + 3 * MV_LANES], s);
                acc[p] += dot(s.lo, (float4) 1.0f) + dot(s.hi, (float4) 1.0f);
            }
        }
    }
    for (; i < in8; i += MV_LANES) {
        float8 a = widen8(w8[i]);
        for (int p = 0; p < MAXN; p++) {
            if (p < np) {
                float8 s = a * x8[(long) xr[p] * in8 + i];
                acc[p] += dot(s.lo, (float4) 1.0f) + dot(s.hi, (float4) 1.0f);
            }
        }
    }
}

// scalar paths for rows of any length
inline void dot_f32s(__global const float* wrow, __global const float* x, int in, const int* xr, int np, int lane,
                     float* acc) {
    for (int i = lane; i < in; i += MV_LANES) {
        float a = wrow[i];
        for (int p = 0; p < MAXN; p++) {
            if (p < np) acc[p] += a * x[(long) xr[p] * in + i];
        }
    }
}

inline void dot_bf16s(__global const ushort* wrow, __global const float* x, int in, const int* xr, int np, int lane,
                      float* acc) {
    for (int i = lane; i < in; i += MV_LANES) {
        float a = widen(wrow[i]);
        for (int p = 0; p < MAXN; p++) {
            if (p < np) acc[p] += a * x[(long) xr[p] * in + i];
        }
    }
}

// Adds the MV_LANES partials of each (row slot rl, p < np): the total lands in red[(rl * MAXN + p) * MV_LANES].
// Every work-item of the group must call it (it has barriers); np is the same for the whole group.
inline void lane_sum(__local float* red, int rl, int lane, int np, const float* acc) {
    for (int p = 0; p < MAXN; p++) {
        if (p < np) red[(rl * MAXN + p) * MV_LANES + lane] = acc[p];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = MV_LANES / 2; s > 0; s >>= 1) {
        if (lane < s) {
            for (int p = 0; p < MAXN; p++) {
                if (p < np) {
                    int o = (rl * MAXN + p) * MV_LANES + lane;
                    red[o] += red[o + s];
                }
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

// Pairs (t, j) of rows [r0, r0 + rows) routed to expert e, in order: pair index into pr, its x row into xr.
// At most one pair per token goes to an expert (top-k ids are distinct), so rows <= MAXN bounds the count.
inline int pairs_of(__global const int* ids, int r0, int rows, int k, int e, int* pr, int* xr, int xDiv) {
    int np = 0;
    for (int p = r0 * k; p < (r0 + rows) * k; p++) {
        if (ids[p] == e && np < MAXN) {
            for (int s = 0; s < MAXN; s++) {  // constant indices keep pr and xr in registers, not on the stack
                if (s == np) {
                    pr[s] = p;
                    xr[s] = xDiv ? p / k : p;
                }
            }
            np++;
        }
    }
    return np;
}

// a[i] for a run-time i < MAXN, by constant indices (a[i] itself would put the array on the stack)
inline int pick(const int* a, int i) {
    int v = 0;
    for (int s = 0; s < MAXN; s++) if (s == i) v = a[s];
    return v;
}

// y[t, row] = W[row] . x[t] for t < n (n <= MAXN), x and y offset to the first token of the launch, W to its first
// element (one expert of a stacked set).
// Launch: global = ceil(out / MV_ROWS) * NT, local = NT.
// Gate and up of SwiGLU experts for the pairs of rows [r0, r0 + rows): act[p, row] = SiLU(W1_e[row] . x_t) *
// (W3_e[row] . x_t), experts stacked [E, inter, hidden]. Groups of experts no pair chose return at once.
// Launch: global = E * ceil(inter / MV_ROWS) * NT, local = NT; group (e, row block).
// Down projection: out[p, row] = W2_e[row] . act[p], W2 stacked [E, hidden, inter].
// Launch: global = E * ceil(hidden / MV_ROWS) * NT, local = NT.
#define MATVEC_FAMILY(SUF, WT, DOT)                                                                                \
__kernel void matvec_##SUF(__global const WT* w, long wOff, __global const float* x, long xOff, __global float* y,  \
                           long yOff, int n, int in, int out) {                                                    \
    __local float red[MV_ROWS * MAXN * MV_LANES];                                                                  \
    int tid = get_local_id(0), lane = tid % MV_LANES, rl = tid / MV_LANES;                                         \
    int row = get_group_id(0) * MV_ROWS + rl;                                                                      \
    float acc[MAXN];                                                                                               \
    int xr[MAXN];                                                                                                  \
    for (int p = 0; p < MAXN; p++) { acc[p] = 0.0f; xr[p] = p; }                                                   \
    if (row < out) DOT(w + wOff + (long) row * in, x + xOff, in, xr, n, lane, acc);                                \
    lane_sum(red, rl, lane, n, acc);                                                                               \
    if (row < out && lane < n) y[yOff + (long) lane * out + row] = red[(rl * MAXN + lane) * MV_LANES];             \
}                                                                                                                  \
__kernel void moe_gate_up_##SUF(__global const WT* w1, __global const WT* w3, __global const float* x,             \
                                __global const int* ids, __global float* act, int r0, int rows, int k, int inter,  \
                                int hidden) {                                                                      \
    __local float redG[MV_ROWS * MAXN * MV_LANES];                                                                 \
    __local float redU[MV_ROWS * MAXN * MV_LANES];                                                                 \
    int blocks = (inter + MV_ROWS - 1) / MV_ROWS;                                                                  \
    int e = get_group_id(0) / blocks;                                                                              \
    int tid = get_local_id(0), lane = tid % MV_LANES, rl = tid / MV_LANES;                                         \
    int row = (get_group_id(0) % blocks) * MV_ROWS + rl;                                                           \
    int pr[MAXN], xr[MAXN];                                                                                        \
    int np = pairs_of(ids, r0, rows, k, e, pr, xr, 1);                                                             \
    if (np == 0) return;                                                                                           \
    float g[MAXN], u[MAXN];                                                                                        \
    for (int p = 0; p < MAXN; p++) { g[p] = 0.0f; u[p] = 0.0f; }                                                   \
    if (row < inter) {                                                                                             \
        long wr = ((long) e * inter + row) * hidden;                                                               \
        DOT(w1 + wr, x, hidden, xr, np, lane, g);                                                                  \
        DOT(w3 + wr, x, hidden, xr, np, lane, u);                                                                  \
    }                                                                                                              \
    lane_sum(redG, rl, lane, np, g);                                                                               \
    lane_sum(redU, rl, lane, np, u);                                                                               \
    if (row < inter && lane < np) {                                                                                \
        float gs = redG[(rl * MAXN + lane) * MV_LANES], us = redU[(rl * MAXN + lane) * MV_LANES];                  \
        act[(long) pick(pr, lane) * inter + row] = gs / (1.0f + exp(-gs)) * us;                                    \
    }                                                                                                              \
}                                                                                                                  \
__kernel void moe_down_##SUF(__global const WT* w2, __global const float* act, __global const int* ids,            \
                             __global float* out, int r0, int rows, int k, int inter, int hidden) {                \
    __local float red[MV_ROWS * MAXN * MV_LANES];                                                                  \
    int blocks = (hidden + MV_ROWS - 1) / MV_ROWS;                                                                 \
    int e = get_group_id(0) / blocks;                                                                              \
    int tid = get_local_id(0), lane = tid % MV_LANES, rl = tid / MV_LANES;                                         \
    int row = (get_group_id(0) % blocks) * MV_ROWS + rl;                                                           \
    int pr[MAXN], xr[MAXN];                                                                                        \
    int np = pairs_of(ids, r0, rows, k, e, pr, xr, 0);                                                             \
    if (np == 0) return;                                                                                           \
    float acc[MAXN];                                                                                               \
    for (int p = 0; p < MAXN; p++) acc[p] = 0.0f;                                                                  \
    if (row < hidden) DOT(w2 + ((long) e * hidden + row) * inter, act, inter, xr, np, lane, acc);                  \
    lane_sum(red, rl, lane, np, acc);                                                                              \
    if (row < hidden && lane < np) out[(long) pick(pr, lane) * hidden + row] = red[(rl * MAXN + lane) * MV_LANES]; \
}

MATVEC_FAMILY(f32v, float, dot_f32v)
MATVEC_FAMILY(bf16v, ushort, dot_bf16v)
MATVEC_FAMILY(f32s, float, dot_f32s)
MATVEC_FAMILY(bf16s, ushort, dot_bf16s)

// ---- matrix products (prefill sizes: compute bound) ----------------------------------------------------------------
// y[m, o] = x[m, :] . W[o, :] for m < n, o < out (x [n, in], W [out, in], both k-contiguous). A work-group of NT
// computes a GM x GN tile of y, 8 x 8 per work-item, walking k GK at a time. Each k tile of x and W is stored k-major
// in local memory (ax[k][m], aw[k][o]) so that a work-item reads its 8 rows and 8 columns as four float4s per k: 4
// local reads per 64 FMAs. Two local buffers: while one is multiplied, the next tile, loaded from global into
// registers before the math, is stored into the other; one barrier per k tile. Work-item (ty, tx) owns rows
// ty*4 + {0..3} and GM/2 + ty*4 + {0..3} and the same pattern of columns: a warp's float4 reads of aw cover 256
// consecutive bytes (no bank conflicts) and its reads of ax are broadcasts.
// Launch: global = ceil(out / GN) * ceil(n / GM) * NT, local = NT; group g: column tile g % ceil(out / GN), row tile
// g / ceil(out / GN).
#define GM 128
#define GN 128
#define GK 16
#define GLD (GM + 4)

// Four consecutive x elements x[row][k..k+3] (zeros past n rows or in columns).
inline float4 ldx4(__global const float* x, int row, int n, int k, int in) {
    if (row >= n) return (float4) 0.0f;
    __global const float* p = x + (long) row * in + k;
    if ((in & 3) == 0 && k + 3 < in) return vload4(0, p);
    return (float4) (k < in ? p[0] : 0.0f, k + 1 < in ? p[1] : 0.0f, k + 2 < in ? p[2] : 0.0f,
                     k + 3 < in ? p[3] : 0.0f);
}

inline float4 ldw4_f32(__global const float* w, int row, int out, int k, int in) { return ldx4(w, row, out, k, in); }

inline float4 ldw4_bf16(__global const ushort* w, int row, int out, int k, int in) {
    if (row >= out) return (float4) 0.0f;
    __global const ushort* p = w + (long) row * in + k;
    if ((in & 3) == 0 && k + 3 < in) return as_float4(convert_uint4(vload4(0, p)) << (uint4) 16);
    return (float4) (k < in ? widen(p[0]) : 0.0f, k + 1 < in ? widen(p[1]) : 0.0f, k + 2 < in ? widen(p[2]) : 0.0f,
                     k + 3 < in ? widen(p[3]) : 0.0f);
}

// Stores a float4 of row r (k..k+3 of the tile) k-major into a[GK][GLD].
inline void st4(__local float* a, int r, int kq, float4 v) {
    a[(kq * 4) * GLD + r] = v.x;
    a[(kq * 4 + 1) * GLD + r] = v.y;
    a[(kq * 4 + 2) * GLD + r] = v.z;
    a[(kq * 4 + 3) * GLD + r] = v.w;
}

#define GEMM(SUF, WT, LDW)                                                                                           \
__kernel void gemm_##SUF(__global const WT* w, long wOff, __global const float* x, long xOff, __global float* y,   \
                         long yOff, int n, int in, int out) {                                                      \
    __local float ax[2][GK * GLD];                                                                                 \
    __local float aw[2][GK * GLD];                                                                                 \
    int tid = get_local_id(0), tx = tid % 16, ty = tid / 16;                                                       \
    int tilesN = (out + GN - 1) / GN;                                                                              \
    int o0 = (get_group_id(0) % tilesN) * GN, m0 = (get_group_id(0) / tilesN) * GM;                               \
    x += xOff;                                                                                                     \
    w += wOff;                                                                                                     \
    /* loads: element f = tid + i * NT of a tile is row f / 4, k quad f % 4 */                                      \
    int lr0 = tid / 4, lr1 = (tid + NT) / 4, lq = tid % 4;                                                         \
    float4 px0 = ldx4(x, m0 + lr0, n, lq * 4, in), px1 = ldx4(x, m0 + lr1, n, lq * 4, in);                         \
    float4 pw0 = LDW(w, o0 + lr0, out, lq * 4, in), pw1 = LDW(w, o0 + lr1, out, lq * 4, in);                       \
    st4(ax[0], lr0, lq, px0); st4(ax[0], lr1, lq, px1);                                                            \
    st4(aw[0], lr0, lq, pw0); st4(aw[0], lr1, lq, pw1);                                                            \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    float acc[8][8];                                                                                               \
    for (int i = 0; i < 8; i++) for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;                                      \
    int tiles = (in + GK - 1) / GK;                                                                                \
    for (int t = 0; t < tiles; t++) {                                                                              \
        int cur = t & 1;                                                                                           \
        if (t + 1 < tiles) {                                                                                       \
            int k = (t + 1) * GK + lq * 4;                                                                         \
            px0 = ldx4(x, m0 + lr0, n, k, in); px1 = ldx4(x, m0 + lr1, n, k, in);                                  \
            pw0 = LDW(w, o0 + lr0, out, k, in); pw1 = LDW(w, o0 + lr1, out, k, in);                                \
        }                                                                                                          \
        __local const float* a = ax[cur];                                                                          \
        __local const float* b = aw[cur];                                                                          \
        for (int kk = 0; kk < GK; kk++) {                                                                          \
            float4 a0 = vload4(0, a + kk * GLD + ty * 4), a1 = vload4(0, a + kk * GLD + GM / 2 + ty * 4);         \
            float4 b0 = vload4(0, b + kk * GLD + tx * 4), b1 = vload4(0, b + kk * GLD + GN / 2 + tx * 4);         \
            float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};                                        \
            float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};                                        \
            for (int i = 0; i < 8; i++) for (int j = 0; j < 8; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);      \
        }                                                                                                          \
        if (t + 1 < tiles) {                                                                                       \
            st4(ax[cur ^ 1], lr0, lq, px0); st4(ax[cur ^ 1], lr1, lq, px1);                                        \
            st4(aw[cur ^ 1], lr0, lq, pw0); st4(aw[cur ^ 1], lr1, lq, pw1);                                        \
        }                                                                                                          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                              \
    }                                                                                                              \
    for (int i = 0; i < 8; i++) {                                                                                  \
        int m = m0 + (i < 4 ? ty * 4 + i : GM / 2 + ty * 4 + i - 4);                                               \
        if (m >= n) continue;                                                                                      \
        __global float* yr = y + yOff + (long) m * out;                                                            \
        for (int j = 0; j < 8; j++) {                                                                              \
            int o = o0 + (j < 4 ? tx * 4 + j : GN / 2 + tx * 4 + j - 4);                                           \
            if (o < out) yr[o] = acc[i][j];                                                                        \
        }                                                                                                          \
    }                                                                                                              \
}

GEMM(f32, float, ldw4_f32)
GEMM(bf16, ushort, ldw4_bf16)

// ---- rows by index (the experts of a prefill chunk, grouped) --------------------------------------------------------
// dst[i, :] = src[idx[idxOff + i], :] for i < n. Launch: global = ceil(n * dim / NT) * NT, local = NT.
__kernel void gather_rows(__global const float* src, __global const int* idx, int idxOff, __global float* dst, int n,
                          int dim) {
    long gid = get_global_id(0);
    if (gid >= (long) n * dim) return;
    int i = gid / dim, c = gid % dim;
    dst[gid] = src[(long) idx[idxOff + i] * dim + c];
}

// dst[idx[idxOff + i], :] = src[i, :] for i < n (the indices distinct). Launch as gather_rows.
__kernel void scatter_rows(__global const float* src, __global const int* idx, int idxOff, __global float* dst, int n,
                           int dim) {
    long gid = get_global_id(0);
    if (gid >= (long) n * dim) return;
    int i = gid / dim, c = gid % dim;
    dst[(long) idx[idxOff + i] * dim + c] = src[gid];
}

// g = SiLU(g) * u. Launch: global = ceil(n / NT) * NT, local = NT.
__kernel void silu_mul(__global float* g, __global const float* u, long n) {
    long gid = get_global_id(0);
    if (gid < n) {
        float v = g[gid];
        g[gid] = v / (1.0f + exp(-v)) * u[gid];
    }
}

// ---- embeddings -----------------------------------------------------------------------------------------------
// out[t, i] = table[ids[t], i]. Launch: global = ceil(n * h / NT) * NT, local = NT.
__kernel void embed_f32(__global const float* table, __global const int* ids, __global float* out, int n, int h) {
    int gid = get_global_id(0);
    if (gid < n * h) out[gid] = table[(long) ids[gid / h] * h + gid % h];
}

__kernel void embed_bf16(__global const ushort* table, __global const int* ids, __global float* out, int n, int h) {
    int gid = get_global_id(0);
    if (gid < n * h) out[gid] = widen(table[(long) ids[gid / h] * h + gid % h]);
}

// ---- row-wise norms (one work-group per row) ----------------------------------------------------------------------

// The sum of v over the work-group, returned to every work-item.
inline float group_sum(__local float* red, float v) {
    int tid = get_local_id(0);
    red[tid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = NT / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

// out = w * x / sqrt(mean(x^2) + eps) per row of x [rows, dim]; out may be x (each element is read, then written, by
// the same work-item, after the whole row was read). Launch: global = rows * NT, local = NT.
__kernel void rms_norm(__global const float* x, __global const float* w, __global float* out, int dim, float eps) {
    __local float red[NT];
    int tid = get_local_id(0);
    long o = (long) get_group_id(0) * dim;
    float ss = 0.0f;
    for (int i = tid; i < dim; i += NT) ss += x[o + i] * x[o + i];
    ss = group_sum(red, ss);
    float inv = 1.0f / sqrt(ss / dim + eps);
    for (int i = tid; i < dim; i += NT) out[o + i] = w[i] * (x[o + i] * inv);
}

// h = alpha * x + beta * u, u = sum_j wts[t, j] * upd[t * k + j] (or upd[t] when hasWeights == 0);
// out = w * h / sqrt(mean(h^2) + eps). h is computed twice rather than stored, so out may be x.
// Launch: global = rows * NT, local = NT.
inline float residual_at(__global const float* x, float alpha, __global const float* upd, __global const float* wts,
                         int k, float beta, int hasWeights, int t, int dim, int i) {
    float u;
    if (hasWeights) {
        u = 0.0f;
        for (int j = 0; j < k; j++) u += wts[t * k + j] * upd[((long) t * k + j) * dim + i];
    } else {
        u = upd[(long) t * dim + i];
    }
    return alpha * x[(long) t * dim + i] + beta * u;
}

__kernel void residual_norm(__global const float* x, float alpha, __global const float* upd,
                            __global const float* wts, int k, float beta, int hasWeights, __global const float* w,
                            float eps, __global float* out, int dim) {
    __local float red[NT];
    int tid = get_local_id(0), t = get_group_id(0);
    float ss = 0.0f;
    for (int i = tid; i < dim; i += NT) {
        float h = residual_at(x, alpha, upd, wts, k, beta, hasWeights, t, dim, i);
        ss += h * h;
    }
    ss = group_sum(red, ss);
    float inv = 1.0f / sqrt(ss / dim + eps);
    for (int i = tid; i < dim; i += NT) {
        float h = residual_at(x, alpha, upd, wts, k, beta, hasWeights, t, dim, i);
        out[(long) t * dim + i] = w[i] * (h * inv);
    }
}

// o = (w * o / sqrt(mean(o^2) + eps)) * sigmoid(gate), per row. Launch: global = rows * NT, local = NT.
__kernel void norm_gate(__global float* o, __global const float* w, __global const float* gate, int dim, float eps) {
    __local float red[NT];
    int tid = get_local_id(0);
    long b = (long) get_group_id(0) * dim;
    float ss = 0.0f;
    for (int i = tid; i < dim; i += NT) ss += o[b + i] * o[b + i];
    ss = group_sum(red, ss);
    float inv = 1.0f / sqrt(ss / dim + eps);
    for (int i = tid; i < dim; i += NT) o[b + i] = (w[i] * (o[b + i] * inv)) * (1.0f / (1.0f + exp(-gate[b + i])));
}

// x = x * sigmoid(x). Launch: global = ceil(n / NT) * NT, local = NT.
__kernel void silu(__global float* x, long n) {
    long gid = get_global_id(0);
    if (gid < n) {
        float v = x[gid];
        x[gid] = v / (1.0f + exp(-v));
    }
}

// ---- lightning attention, one recurrent step of one sequence ----------------------------------------------------------
// S = exp(-lambda_h) S + k^T v; o = q S. q | k | v of head h at qkv[qkvOff + h * 3D ...]; state [H, D, D];
// out[outOff + h * D + j]. Launch: global = H * ceil(D / 64) * NT, local = NT; group (h, ct) owns columns
// ct * 64 + lane; work-item (slice, lane) walks rows i = slice, slice + 4, ...
#define LS_COLS 64
#define LS_SLICES (NT / LS_COLS)
#define LS_UNROLL 8

// The lightning step of one column j of a head's state, over rows i = i0, i0 + step, ... < i1:
// S[i][j] = ratio S[i][j] + k[i] v_j, written back; returns sum_i q[i] S[i][j] (summed in order of i). s points at
// S[0][j] (rows dim floats apart). The one body of the per-operation step (lightning_step) and the fused ones
// (dec_lightning, dec_lightning2). LS_UNROLL state loads are issued before any is used: a loop that loads, updates
// and stores one row at a time waits a memory round trip a row.
inline float lightning_column(__global float* s, int dim, __global const float* q, __global const float* k, float vj,
                              float ratio, int i0, int i1, int step) {
    float o = 0.0f;
    for (int i = i0; i < i1; i += LS_UNROLL * step) {
        float sv[LS_UNROLL];
        for (int u = 0; u < LS_UNROLL; u++) {
            int r = i + u * step;
            sv[u] = r < i1 ? s[(long) r * dim] : 0.0f;
        }
        for (int u = 0; u < LS_UNROLL; u++) {
            int r = i + u * step;
            if (r < i1) {
                float sij = ratio * sv[u] + k[r] * vj;
                s[(long) r * dim] = sij;
                o += q[r] * sij;
            }
        }
    }
    return o;
}

__kernel void lightning_step(__global const float* qkv, long qkvOff, __global const float* decay,
                             __global float* state, __global float* out, long outOff, int heads, int dim) {
    __local float part[NT];
    int tid = get_local_id(0), lane = tid % LS_COLS, slice = tid / LS_COLS;
    int colTiles = (dim + LS_COLS - 1) / LS_COLS;
    int ct = get_group_id(0) % colTiles, h = get_group_id(0) / colTiles;
    int j = ct * LS_COLS + lane;
    __global const float* q = qkv + qkvOff + (long) h * 3 * dim;
    __global const float* k = q + dim;
    __global const float* v = q + 2 * dim;
    float ratio = exp(-decay[h]);
    float o = j < dim ? lightning_column(state + (long) h * dim * dim + j, dim, q, k, v[j], ratio, slice, dim, LS_SLICES)
                      : 0.0f;
    part[tid] = o;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (slice == 0 && j < dim) {
        float sum = 0.0f;
        for (int sl = 0; sl < LS_SLICES; sl++) sum += part[sl * LS_COLS + lane];
        out[outOff + (long) h * dim + j] = sum;
    }
}

// Lightning attention over n consecutive tokens of one sequence (prefill on the device), the recurrent form in order:
// S = exp(-lambda_h) S + k_t^T v_t; o_t = q_t S for t < n. Group (h, ct) owns columns ct * 64 + lane of head h's S;
// work-item (slice, lane) keeps rows i = slice, slice + 4, ... of its column in registers for the whole scan, so S is
// read and written once per launch. q_t and k_t are the same for all work-items of the head (broadcast loads). The 4
// slices' partial o go through local memory, double-buffered so each token needs one barrier.
// Launch: global = H * ceil(D / 64) * NT, local = NT. D <= 128.
#define LS_ROWS (128 / LS_SLICES)  /* D <= 128, as DA_MAXD below */
__kernel void lightning_scan(__global const float* qkv, __global const float* decay, __global float* state,
                             __global float* out, int n, int heads, int dim) {
    __local float part[2][NT];
    int tid = get_local_id(0), lane = tid % LS_COLS, slice = tid / LS_COLS;
    int colTiles = (dim + LS_COLS - 1) / LS_COLS;
    int ct = get_group_id(0) % colTiles, h = get_group_id(0) / colTiles;
    int j = ct * LS_COLS + lane;
    bool col = j < dim;
    float ratio = exp(-decay[h]);
    __global float* s = state + (long) h * dim * dim + (col ? j : 0);
    float sr[LS_ROWS];
    for (int r = 0; r < LS_ROWS; r++) {
        int i = slice + r * LS_SLICES;
        sr[r] = (col && i < dim) ? s[(long) i * dim] : 0.0f;
    }
    long stride = 3L * heads * dim;
    for (int t = 0; t < n; t++) {
        __global const float* q = qkv + t * stride + (long) h * 3 * dim;
        __global const float* k = q + dim;
        float vj = col ? q[2 * dim + j] : 0.0f;
        float o = 0.0f;
        for (int r = 0; r < LS_ROWS; r++) {
            int i = slice + r * LS_SLICES;
            if (i < dim) {
                sr[r] = ratio * sr[r] + k[i] * vj;
                o += q[i] * sr[r];
            }
        }
        part[t & 1][tid] = o;
        barrier(CLK_LOCAL_MEM_FENCE);
        if (slice == 0 && col) {
            float sum = 0.0f;
            for (int sl = 0; sl < LS_SLICES; sl++) sum += part[t & 1][sl * LS_COLS + lane];
            out[(long) t * heads * dim + (long) h * dim + j] = sum;
        }
    }
    for (int r = 0; r < LS_ROWS; r++) {
        int i = slice + r * LS_SLICES;
        if (col && i < dim) s[(long) i * dim] = sr[r];
    }
}

// ---- softmax attention ---------------------------------------------------------------------------------------------

// NeoX RoPE on the first 2 * hr dims of each head of x [rows, heads, dim], row t at position pos[t].
// Launch: global = ceil(rows * heads * hr / NT) * NT, local = NT.
__kernel void rope(__global float* x, __global const float* invFreq, __global const int* pos, int rows, int heads,
                   int dim, int hr) {
    int gid = get_global_id(0);
    if (gid >= rows * heads * hr) return;
    int i = gid % hr, h = (gid / hr) % heads, t = gid / (hr * heads);
    float angle = (float) pos[t] * invFreq[i];
    float c = cos(angle), s = sin(angle);
    long a = ((long) t * heads + h) * dim + i, b = a + hr;
    float x1 = x[a], x2 = x[b];
    x[a] = x1 * c - x2 * s;
    x[b] = x2 * c + x1 * s;
}

// Decode attention, pass 1: one query (G = H / KV heads per kv head) over keys [k0, k1) of one split.
// Per tile of DA_KEYS keys: the keys go to local memory (their loads issued a tile ahead), work-item (g, c) scores
// key c for head g, then turns it into p = exp(s - m) with the running max m of head g (each of head g's work-items
// computes the same m); work-item (j, part) accumulates o[g][j] for heads g = part, part + parts, ... from values
// held in registers (also loaded a tile ahead). Three barriers a tile. Writes an unnormalised partial (o, m, l)
// per (kv head, split, head of the group).
// Launch: global = KV * splits * NT, local = NT; group kvh * splits + sp. Limits: D <= DA_MAXD, G <= DA_MAXG.
#define DA_KEYS 32
#define DA_MAXD 128
#define DA_MAXG 16
#define DA_KLOADS (DA_KEYS * DA_MAXD / NT)
#define DA_SLOTS (DA_MAXG / 2)
#define DA_SROWS (DA_MAXG * DA_KEYS / NT)
#define DA_NEG -1e30f
__kernel void attn_split(__global const float* q, long qOff, __global const float* kc, __global const float* vc,
                         __global float* part, int heads, int kvHeads, int dim, int len, int splitLen, int splits,
                         float scale) {
    __local float lq[DA_MAXG * DA_MAXD];        // [G][D] queries, pre-scaled
    __local float lk[DA_KEYS * (DA_MAXD + 1)];  // [KEYS][D + 1] keys of the tile
    __local float ls[DA_MAXG * DA_KEYS];        // [G][KEYS] scores
    __local float lp[DA_MAXG * DA_KEYS];        // [G][KEYS] probabilities
    __local float lm[DA_MAXG];                  // running max per head after this tile
    int tid = get_local_id(0);
    int sp = get_group_id(0) % splits, kvh = get_group_id(0) / splits;
    int G = heads / kvHeads, kvd = kvHeads * dim, ld = dim + 1;
    int k0 = sp * splitLen, k1 = min(k0 + splitLen, len);
    int parts = NT / dim, j = tid % dim, pp = tid / dim;
    for (int idx = tid; idx < G * dim; idx += NT) lq[idx] = q[qOff + (long) (kvh * G) * dim + idx] * scale;
    float acc[DA_SLOTS], mrun[DA_SLOTS], lrun[DA_SLOTS], msc[DA_SROWS];
    for (int s = 0; s < DA_SLOTS; s++) { acc[s] = 0.0f; mrun[s] = DA_NEG; lrun[s] = 0.0f; }
    for (int r = 0; r < DA_SROWS; r++) msc[r] = DA_NEG;
    float rk[DA_KLOADS], rv[DA_KEYS];
    for (int l = 0; l < DA_KLOADS; l++) {
        int idx = tid + l * NT, p = k0 + idx / dim;
        rk[l] = (idx < DA_KEYS * dim && p < k1) ? kc[(long) p * kvd + kvh * dim + idx % dim] : 0.0f;
    }
    for (int c = 0; c < DA_KEYS; c++) {
        int p = k0 + c;
        rv[c] = (pp < parts && p < k1) ? vc[(long) p * kvd + kvh * dim + j] : 0.0f;
    }
    for (int p0 = k0; p0 < k1; p0 += DA_KEYS) {
        for (int l = 0; l < DA_KLOADS; l++) {
            int idx = tid + l * NT;
            if (idx < DA_KEYS * dim) lk[(idx / dim) * ld + idx % dim] = rk[l];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int l = 0; l < DA_KLOADS; l++) {  // next tile's keys, in flight during the math
            int idx = tid + l * NT, p = p0 + DA_KEYS + idx / dim;
            rk[l] = (idx < DA_KEYS * dim && p < k1) ? kc[(long) p * kvd + kvh * dim + idx % dim] : 0.0f;
        }
        for (int r = 0; r < DA_SROWS; r++) {
            int idx = tid + r * NT;
            if (idx < G * DA_KEYS) {
                int g = idx / DA_KEYS, c = idx % DA_KEYS;
                float s = 0.0f;
                for (int i = 0; i < dim; i++) s += lq[g * dim + i] * lk[c * ld + i];
                ls[idx] = (p0 + c < k1) ? s : DA_NEG;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int r = 0; r < DA_SROWS; r++) {
            int idx = tid + r * NT;
            if (idx < G * DA_KEYS) {
                int g = idx / DA_KEYS;
                float m = msc[r];
                for (int c = 0; c < DA_KEYS; c++) m = max(m, ls[g * DA_KEYS + c]);
                msc[r] = m;
                float s = ls[idx];
                lp[idx] = s > 0.5f * DA_NEG ? exp(s - m) : 0.0f;
                if (idx % DA_KEYS == 0) lm[g] = m;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int s = 0; s < DA_SLOTS; s++) {  // o[g][j] = alpha o + sum_c p[g][c] v[c][j]
            int g = pp + s * parts;
            if (pp < parts && g < G) {
                float mNew = lm[g];
                float alpha = exp(mrun[s] - mNew);
                float o = 0.0f, l = 0.0f;
                for (int c = 0; c < DA_KEYS; c++) {
                    float pc = lp[g * DA_KEYS + c];
                    o += pc * rv[c];
                    l += pc;
                }
                acc[s] = acc[s] * alpha + o;
                lrun[s] = lrun[s] * alpha + l;
                mrun[s] = mNew;
            }
        }
        for (int c = 0; c < DA_KEYS; c++) {  // next tile's values
            int p = p0 + DA_KEYS + c;
            rv[c] = (pp < parts && p < k1) ? vc[(long) p * kvd + kvh * dim + j] : 0.0f;
        }
    }
    long base = ((long) (kvh * splits + sp)) * G * (dim + 2);
    for (int s = 0; s < DA_SLOTS; s++) {
        int g = pp + s * parts;
        if (pp < parts && g < G) {
            part[base + g * (dim + 2) + j] = acc[s];
            if (j == 0) {
                part[base + g * (dim + 2) + dim] = mrun[s];
                part[base + g * (dim + 2) + dim + 1] = lrun[s];
            }
        }
    }
}

#define DB_G 8
#define DB_LANES (DA_MAXD / 4)
#define DB_W (NT / DB_LANES)
#define DB_KL 8

// Decode attention, pass 1, bandwidth path (G <= DB_G, D % 4 == 0, D <= DA_MAXD): the same partials as attn_split,
// a tile of NT keys at a time, every key and value row read from global memory once and no key in local memory.
// Scores: DB_KL work-items share a key row, so a warp's load covers whole 128-byte lines of four rows (one work-item
// per row, tried first, had each warp load touch 32 lines 4 KB apart: 1,359 against 2,312 GB/s on an H200); each
// scores its part of the row for all G heads against the queries in local memory, and the DB_KL partials are added
// through local memory (two barriers per 32 keys). The tile's max per head goes through local memory, then
// p = exp(s - m). Values: work-item (w, dq) adds keys w, w + DB_W, ... into o[g][4 dq .. 4 dq + 3] for all G heads,
// so a value row is one coalesced read by the DB_LANES work-items of a lane group; the DB_W partial sums are added by
// a tree through local memory once, at the end of the split. Query row `row` (causal prefill rows; decode: row 0)
// sees the first len + row keys.
// Launch: global = rows * KV * splits * NT, local = NT; group (row * KV + kvh) * splits + sp.
// Every loop over the heads of the group runs to the constant DB_G (guarded by g < G): with G as its bound, the
// compiler cannot index acc, lsum and sc with constants and puts them on the stack, in memory.
__kernel void attn_split_bw(__global const float* q, long qOff, __global const float* kc, __global const float* vc,
                            __global float* part, int heads, int kvHeads, int dim, int len, int splitLen, int splits,
                            float scale) {
    __local float4 lq[DB_G * DB_LANES];        // [G][D/4] queries, pre-scaled
    __local float big[DB_G * NT * 2];          // scores [G][NT] and probabilities [NT][DB_G]; at the end, the tree
    __local float red[DB_G * 32];              // per-head partial maxima; at the end, the tree's sums of p
    __local float lm[DB_G], lalpha[DB_G];      // running max per head, and this tile's rescale of the old sums
    __local float kpart[NT * (DB_G + 1)];      // the scores' partial sums [NT][DB_G + 1]
    __local float* ls = big;
    __local float4* lp = (__local float4*) (big + DB_G * NT);
    int tid = get_local_id(0);
    // group (row, kvh, sp): query row `row` of q sees the first len + row keys (causal prefill rows; decode: row 0)
    int sp = get_group_id(0) % splits, kvh = (get_group_id(0) / splits) % kvHeads;
    int row = get_group_id(0) / (splits * kvHeads);
    int G = heads / kvHeads, kvd = kvHeads * dim, d4 = dim / 4;
    int k0 = sp * splitLen, k1 = min(k0 + splitLen, len + row);  // an empty split leaves m = -inf, l = 0
    qOff += (long) row * heads * dim;
    for (int idx = tid; idx < G * d4; idx += NT) {
        int g = idx / d4, i = idx % d4;
        lq[g * DB_LANES + i] = vload4(0, q + qOff + (long) (kvh * G + g) * dim + 4 * i) * scale;
    }
    if (tid < DB_G) lm[tid] = DA_NEG;
    int w = tid / DB_LANES, dq = tid % DB_LANES;
    float4 acc[DB_G];
    float lsum[DB_G];
    for (int g = 0; g < DB_G; g++) { acc[g] = (float4) 0.0f; lsum[g] = 0.0f; }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int p0 = k0; p0 < k1; p0 += NT) {
        // scores, coalesced: in each of NT / 32 passes, DB_KL work-items share a key, each reading D / DB_KL of its
        // row (whole 128-byte lines for D = 128) and scoring them for every head; the DB_KL partials of each (key,
        // head) are added through local memory by one work-item, which writes the score into ls
        for (int pass = 0; pass < NT / 32; pass++) {
            int key = pass * 32 + tid / DB_KL, part8 = tid % DB_KL, p = p0 + key;
            float sc[DB_G];
            for (int g = 0; g < DB_G; g++) sc[g] = 0.0f;
            if (p < k1) {
                __global const float* kr = kc + (long) p * kvd + kvh * dim;
                int per = (d4 + DB_KL - 1) / DB_KL;
                float4 kv[4];
                for (int u = 0; u < 4; u++) {  // the row's quads part8, part8 + DB_KL, ...: one line per load
                    int i = part8 + u * DB_KL;
                    kv[u] = (u < per && i < d4) ? vload4(i, kr) : (float4) 0.0f;
                }
                for (int u = 0; u < 4; u++) {
                    int i = part8 + u * DB_KL;
                    if (u < per && i < d4) {
                        for (int g = 0; g < DB_G; g++) if (g < G) sc[g] += dot(lq[g * DB_LANES + i], kv[u]);
                    }
                }
            }
            for (int g = 0; g < DB_G; g++) kpart[tid * (DB_G + 1) + g] = sc[g];
            barrier(CLK_LOCAL_MEM_FENCE);
            {
                int g = part8;  // this work-item adds head g of its key (DB_KL == DB_G)
                float sum = 0.0f;
                for (int l = 0; l < DB_KL; l++) sum += kpart[((tid / DB_KL) * DB_KL + l) * (DB_G + 1) + g];
                if (g < G) ls[g * NT + key] = p < k1 ? sum : DA_NEG;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        float sc[DB_G];
        for (int g = 0; g < DB_G; g++) sc[g] = g < G ? ls[g * NT + tid] : DA_NEG;
        barrier(CLK_LOCAL_MEM_FENCE);
        {   // the tile's max per head: 32 work-items per head, each over NT / 32 scores, then one per head
            int g = tid / 32, l = tid % 32;
            if (g < G) {
                float m = DA_NEG;
                for (int c = l; c < NT; c += 32) m = max(m, ls[g * NT + c]);
                red[g * 32 + l] = m;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (tid < G) {
            float m = DA_NEG;
            for (int l = 0; l < 32; l++) m = max(m, red[tid * 32 + l]);
            float mOld = lm[tid], mNew = max(mOld, m);
            lalpha[tid] = exp(mOld - mNew);
            lm[tid] = mNew;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        {
            float pr[DB_G];
            for (int g = 0; g < DB_G; g++) pr[g] = (g < G && sc[g] > 0.5f * DA_NEG) ? exp(sc[g] - lm[g]) : 0.0f;
            lp[2 * tid] = (float4) (pr[0], pr[1], pr[2], pr[3]);
            lp[2 * tid + 1] = (float4) (pr[4], pr[5], pr[6], pr[7]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        // o[g] = alpha o[g] + sum_c p[c][g] v[c]
        if (dq < d4) {
            for (int g = 0; g < DB_G; g++) { acc[g] *= lalpha[g < G ? g : 0]; lsum[g] *= lalpha[g < G ? g : 0]; }
            int cEnd = min(NT, k1 - p0);
            for (int c0 = w; c0 < cEnd; c0 += 4 * DB_W) {  // four value rows in flight
                float4 vv[4];
                for (int u = 0; u < 4; u++) {
                    int c = c0 + u * DB_W;
                    vv[u] = c < cEnd ? vload4(dq, vc + (long) (p0 + c) * kvd + kvh * dim) : (float4) 0.0f;
                }
                for (int u = 0; u < 4; u++) {
                    int c = min(c0 + u * DB_W, NT - 1);  // past cEnd: v is 0 and p of a key past the split is 0
                    float4 v = vv[u], pa = lp[2 * c], pb = lp[2 * c + 1];
                    acc[0] += pa.x * v; acc[1] += pa.y * v; acc[2] += pa.z * v; acc[3] += pa.w * v;
                    acc[4] += pb.x * v; acc[5] += pb.y * v; acc[6] += pb.z * v; acc[7] += pb.w * v;
                    if (c0 + u * DB_W < cEnd) {
                        lsum[0] += pa.x; lsum[1] += pa.y; lsum[2] += pa.z; lsum[3] += pa.w;
                        lsum[4] += pb.x; lsum[5] += pb.y; lsum[6] += pb.z; lsum[7] += pb.w;
                    }
                }
            }
        }
    }
    // the DB_W lane groups' partial sums, added by a tree through local memory (big holds DB_W / 2 groups' o)
    for (int hw = DB_W / 2; hw >= 1; hw >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (w >= hw && w < 2 * hw && dq < d4) {
            for (int g = 0; g < DB_G; g++) if (g < G) vstore4(acc[g], 0, big + ((w - hw) * DB_G + g) * DA_MAXD + 4 * dq);
            if (dq == 0) for (int g = 0; g < DB_G; g++) if (g < G) red[(w - hw) * DB_G + g] = lsum[g];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (w < hw && dq < d4) {
            for (int g = 0; g < DB_G; g++) {
                if (g < G) {
                    acc[g] += vload4(0, big + (w * DB_G + g) * DA_MAXD + 4 * dq);
                    lsum[g] += red[w * DB_G + g];
                }
            }
        }
    }
    if (w == 0 && dq < d4) {
        long base = (((long) row * kvHeads + kvh) * splits + sp) * G * (dim + 2);
        for (int g = 0; g < DB_G; g++) {
            if (g < G) {
                vstore4(acc[g], 0, part + base + g * (dim + 2) + 4 * dq);
                if (dq == 0) {
                    part[base + g * (dim + 2) + dim] = lm[g];
                    part[base + g * (dim + 2) + dim + 1] = lsum[g];
                }
            }
        }
    }
}

// Decode attention, pass 2: out[row, h, j] = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s over the splits.
// Launch: global = ceil(rows * H * D / NT) * NT, local = NT (rows = 1 but for attn_split_bw's causal rows).
__kernel void attn_combine(__global const float* part, __global float* out, long outOff, int heads, int kvHeads,
                           int dim, int splits, int rows) {
    int gid = get_global_id(0);
    if (gid >= rows * heads * dim) return;
    int j = gid % dim, h = (gid / dim) % heads, row = gid / (heads * dim), G = heads / kvHeads, kvh = h / G, g = h % G;
    long stride = (long) G * (dim + 2);
    long base = ((long) row * kvHeads + kvh) * splits * stride + g * (dim + 2);
    float m = DA_NEG;
    for (int s = 0; s < splits; s++) m = max(m, part[base + s * stride + dim]);
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < splits; s++) {
        long o = base + s * stride;
        float w = exp(part[o + dim] - m);
        num += w * part[o + j];
        den += w * part[o + dim + 1];
    }
    out[outOff + (long) row * heads * dim + (long) h * dim + j] = num / den;
}

// ---- MoE router --------------------------------------------------------------------------------------------------
// One row's routing, the one body `route`, dec_out's tail and dec_norm_route share: p = softmax(lg[0, E)) in fp32;
// the top k by probability (ties to the lower id) into ids[0, k), their p renormalised to sum 1 into wts[0, k).
// E <= 64 (the experts taken are one ulong's bits). Written once per address space of the logits (OpenCL 1.2 has no
// generic pointers): top_k_global for `route`'s logits in global memory, top_k_local for the fused kernels'.
#define TOP_K(NAME, AS)                                                                                              \
inline void NAME(AS const float* lg, int E, int k, __global int* ids, __global float* wts) {                        \
    float m = -INFINITY;                                                                                             \
    for (int e = 0; e < E; e++) m = max(m, lg[e]);                                                                   \
    float sum = 0.0f;                                                                                                \
    for (int e = 0; e < E; e++) sum += exp(lg[e] - m);                                                               \
    ulong taken = 0;                                                                                                 \
    float kept = 0.0f;                                                                                               \
    for (int j = 0; j < k; j++) {                                                                                    \
        int best = -1;                                                                                               \
        float bp = 0.0f;                                                                                             \
        for (int e = 0; e < E; e++) {                                                                                \
            if ((taken >> e) & 1UL) continue;                                                                        \
            float p = exp(lg[e] - m) / sum;                                                                          \
            if (best < 0 || p > bp) { best = e; bp = p; }                                                            \
        }                                                                                                            \
        taken |= 1UL << best;                                                                                        \
        ids[j] = best;                                                                                               \
        wts[j] = bp;                                                                                                 \
        kept += bp;                                                                                                  \
    }                                                                                                                \
    for (int j = 0; j < k; j++) wts[j] /= kept;                                                                      \
}
TOP_K(top_k_global, __global)
TOP_K(top_k_local, __local)

// Routes every row: ids, wts [rows, k] from logits [rows, E], as top_k.
// Launch: global = ceil(rows / NT) * NT, local = NT; one work-item per row.
__kernel void route(__global const float* logits, __global int* ids, __global float* wts, int rows, int E, int k) {
    int t = get_global_id(0);
    if (t < rows) top_k_global(logits + (long) t * E, E, k, ids + t * k, wts + t * k);
}

// ---- greedy token choice ---------------------------------------------------------------------------------------
// out[row] = the index of the largest of the row's V logits, as the host's Sampler.argmax (a scan from index 0 that
// moves on a strictly larger value): ties to the lowest index, a NaN never chosen, 0 when the first logit is NaN (the
// host's scan never leaves it then) or every logit is. One work-group a row: each work-item the first maximum of its
// strided share, then a tree over the group, the lower index winning ties. A greedy decode step reads these ints
// instead of the [rows, V] logits.
__kernel void argmax_rows(__global const float* logits, int V, __global int* out) {
    __local float bv[NT];
    __local int bi[NT];
    int t = get_local_id(0), row = get_group_id(0);
    __global const float* l = logits + (long) row * V;
    float best = 0.0f;
    int at = -1;
    for (int i = t; i < V; i += NT) {
        float v = l[i];
        if (!isnan(v) && (at < 0 || v > best)) { best = v; at = i; }
    }
    bv[t] = best;
    bi[t] = at;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = NT / 2; s > 0; s >>= 1) {
        if (t < s) {
            int j = bi[t + s];
            float w = bv[t + s];
            if (j >= 0 && (bi[t] < 0 || w > bv[t] || (w == bv[t] && j < bi[t]))) { bv[t] = w; bi[t] = j; }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0) out[row] = isnan(l[0]) || bi[0] < 0 ? 0 : bi[0];
}

// ---- the fused decode step (FusedDecode launches them) ------------------------------------------------------------
// One decode step of n <= MAXN rows (one token of each sequence of the batch) in five launches a layer with the
// tails below (seven in the split form FusedOps takes by default: dec_out's and dec_down's tails as matvec +
// dec_norm_route and moe_down + residual_norm, since the tail code's registers slowed their weight streams on an H200):
//   projections (+ SiLU, or + RoPE and the KV append) | lightning step + norm-gate, or attention + combine |
//   output projection + residual + post-norm + router | experts' gate and up | experts' down + residual + next norm.
// Work that needs the whole output of a launch (a norm over a row, the router, the combine of attention splits) is
// done in the same launch by the work-group that finishes last (a "tail"): each group, its writes fenced, counts
// itself on a counter; the one that completes the count runs the tail and resets the counter. No group ever waits for
// another, so this holds however many groups the device runs at once (PoCL runs them in turn on a few threads).
// Barriers stay out of branches on the tail's flag: PoCL 6 crashes on a barrier in a branch whose condition comes from
// local memory (seen on the first version of these kernels), so elsewhere the other groups run the tail idle (its
// loops bounded by the flag, its barriers taken); NVIDIA's groups other than the last leave at once (TAIL).
// The step's rows: info[t] token id, info[MAXN + t] position, info[2 * MAXN + t] slot of its sequence's state.
// A softmax layer's KV caches are the sequences' own buffers, kc0..kc7 and vc0..vc7 (row t's at KC(t)); each holds
// rows 0..pos[t] once the projections' tail appended the step's row at pos[t].

#ifdef LM_NVIDIA
#define GRID_FENCE() asm volatile("membar.gl;" ::: "memory")
#else
#define GRID_FENCE() mem_fence(CLK_GLOBAL_MEM_FENCE)
#endif
#ifdef LM_NVIDIA
#define TAIL(last) if (!(last)) return;
#else
#define TAIL(last)
#endif
#define POS(info, t) (info[MAXN + (t)])
#define SLOT(info, t) (info[2 * MAXN + (t)])
#define CACHE_ARGS(p) __global float* p##0, __global float* p##1, __global float* p##2, __global float* p##3, \
    __global float* p##4, __global float* p##5, __global float* p##6, __global float* p##7
#define PICK8(p, t) ((t) == 0 ? p##0 : (t) == 1 ? p##1 : (t) == 2 ? p##2 : (t) == 3 ? p##3 : (t) == 4 ? p##4 \
    : (t) == 5 ? p##5 : (t) == 6 ? p##6 : p##7)

// Counts this work-group as done on *counter (total groups share it); true, in every work-item, in the last one,
// which then sees every group's writes. Every work-item of every group must call it once.
inline int arrive(volatile __global int* counter, int total, __local int* flag) {
    GRID_FENCE();
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    if (get_local_id(0) == 0) {
        int last = atomic_inc(counter) == total - 1;
        if (last) atomic_xchg(counter, 0);
        *flag = last;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    int last = *flag;
    if (last) GRID_FENCE();
    return last;
}

// out[t] = w * e / sqrt(mean(e^2) + eps), e = table[ids[t]]: the embedding and the first input norm.
// Launch: global = n * NT, local = NT; group t.
#define EMBED_NORM(SUF, WT, LD)                                                                                      \
__kernel void dec_embed_norm_##SUF(__global const WT* table, __global const int* info, __global const float* w,    \
                                   float eps, __global float* out, int h) {                                       \
    __local float red[NT];                                                                                         \
    int tid = get_local_id(0), t = get_group_id(0);                                                                \
    __global const WT* e = table + (long) info[t] * h;                                                             \
    float ss = 0.0f;                                                                                               \
    for (int i = tid; i < h; i += NT) { float v = LD(e[i]); ss += v * v; }                                         \
    ss = group_sum(red, ss);                                                                                       \
    float inv = 1.0f / sqrt(ss / h + eps);                                                                         \
    for (int i = tid; i < h; i += NT) out[(long) t * h + i] = w[i] * (LD(e[i]) * inv);                             \
}
#define LD_F32(v) (v)
EMBED_NORM(f32, float, LD_F32)
EMBED_NORM(bf16, ushort, widen)

// Every row of x [n, h] at once: x[t] = w * r_t / sqrt(mean(r_t^2) + eps), r_t = residual_at(..., t, ...): each
// work-item's sums of squares of all rows, added by one tree over red [MAXN * NT]. lim is h, or 0 in an idle group
// (its barriers taken all the same). Each element is read and then written by the same work-item.
inline void rows_residual_norm(__global float* x, float alpha, __global const float* upd, __global const float* wts,
                               int k, float beta, int hasWeights, __global const float* w, float eps, int n, int h,
                               int lim, __local float* red) {
    int tid = get_local_id(0);
    float ss[MAXN];
    for (int t = 0; t < MAXN; t++) ss[t] = 0.0f;
    for (int i = tid; i < lim; i += NT) {
        for (int t = 0; t < MAXN; t++) {
            if (t < n) {
                float r = residual_at(x, alpha, upd, wts, k, beta, hasWeights, t, h, i);
                ss[t] += r * r;
            }
        }
    }
    for (int t = 0; t < MAXN; t++) red[t * NT + tid] = ss[t];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int st = NT / 2; st > 0; st >>= 1) {
        if (tid < st) for (int t = 0; t < MAXN; t++) red[t * NT + tid] += red[t * NT + tid + st];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float inv[MAXN];
    for (int t = 0; t < MAXN; t++) inv[t] = 1.0f / sqrt(red[t * NT] / h + eps);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = tid; i < lim; i += NT) {
        for (int t = 0; t < MAXN; t++) {
            if (t < n) x[(long) t * h + i] = w[i] * (residual_at(x, alpha, upd, wts, k, beta, hasWeights, t, h, i) * inv[t]);
        }
    }
}

// NeoX RoPE of the pair (i, i + hr) of one head row at position p.
inline void rope_pair(__global float* r, int i, int hr, float p, __global const float* invFreq) {
    float angle = p * invFreq[i];
    float c = cos(angle), s = sin(angle);
    float x1 = r[i], x2 = r[i + hr];
    r[i] = x1 * c - x2 * s;
    r[i + hr] = x2 * c + x1 * s;
}

// Output rows [0, outA) from wa into ya [n, outA], the next outB from wb into yb, the next outC from wc into yc: one
// matrix-vector pass over x [n, in] for two or three products of the same input. siluA: ya = SiLU(.). rope: a softmax
// layer's q (ya [n, H, D]), k and v (yb, yc [n, KV, D]): the tail rotates q and k at each row's position and appends
// row t's k and v to its caches at row pos[t] (cache rows of KV * D).
// dec_proj_* without the tail (rope 0), dec_projr_* with it (rope 1).
// Launch: global = ceil((outA + outB + outC) / MV_ROWS) * NT, local = NT.
#define DEC_PROJ(SUF, WT, DOT, KNAME, ROPE)                                                                          \
__kernel void KNAME##_##SUF(__global const WT* wa, __global const WT* wb, __global const WT* wc,                  \
                             __global const float* x, __global float* ya, __global float* yb, __global float* yc,  \
                             int n, int in, int outA, int outB, int outC, int siluA,                               \
                             __global const int* info, __global const float* invFreq, int heads, int kvHeads,      \
                             int dim, int hr, __global int* counter, CACHE_ARGS(kc), CACHE_ARGS(vc)) {           \
    __local float red[MV_ROWS * MAXN * MV_LANES];                                                                  \
    __local int flag;                                                                                              \
    int tid = get_local_id(0), lane = tid % MV_LANES, rl = tid / MV_LANES;                                         \
    int row = get_group_id(0) * MV_ROWS + rl, total = outA + outB + outC;                                          \
    __global const WT* w = row < outA ? wa + (long) row * in                                                       \
            : row < outA + outB ? wb + (long) (row - outA) * in : wc + (long) (row - outA - outB) * in;            \
    float acc[MAXN];                                                                                               \
    int xr[MAXN];                                                                                                  \
    for (int p = 0; p < MAXN; p++) { acc[p] = 0.0f; xr[p] = p; }                                                   \
    if (row < total) DOT(w, x, in, xr, n, lane, acc);                                                              \
    lane_sum(red, rl, lane, n, acc);                                                                               \
    if (row < total && lane < n) {                                                                                 \
        float v = red[(rl * MAXN + lane) * MV_LANES];                                                              \
        if (row < outA) ya[(long) lane * outA + row] = siluA ? v / (1.0f + exp(-v)) : v;                           \
        else if (row < outA + outB) yb[(long) lane * outB + row - outA] = v;                                       \
        else yc[(long) lane * outC + row - outA - outB] = v;                                                       \
    }                                                                                                              \
    if (!ROPE) return;                                                                                             \
    int last = arrive(counter, get_num_groups(0), &flag);                                                          \
    TAIL(last)                                                                                                     \
    int kvd = kvHeads * dim;                                                                                       \
    for (int idx = tid; idx < (last ? n * (heads + kvHeads) * hr : 0); idx += NT) {                              \
        int i = idx % hr, hh = (idx / hr) % (heads + kvHeads), t = idx / (hr * (heads + kvHeads));           \
        __global float* r = hh < heads ? ya + ((long) t * heads + hh) * dim                                        \
                : yb + (long) t * kvd + (hh - heads) * dim;                                                        \
        rope_pair(r, i, hr, (float) POS(info, t), invFreq);                                                      \
    }                                                                                                              \
    barrier(CLK_GLOBAL_MEM_FENCE);                                                                                 \
    for (int idx = tid; idx < (last ? n * kvd : 0); idx += NT) {                                                   \
        int t = idx / kvd, c = idx % kvd;                                                                          \
        long at = (long) POS(info, t) * kvd + c;                                                                   \
        PICK8(kc, t)[at] = yb[idx];                                                                                \
        PICK8(vc, t)[at] = yc[idx];                                                                                \
    }                                                                                                              \
}

// Output projection and what follows it in the layer: a [n, out] = W . o; then, in the tail, for every row,
// x = normW * r / sqrt(mean(r^2) + eps) with r = alpha * x + beta * a, the router's logits x . gate^T [n, E] and its
// top k (softmax, top k by probability, ties to the lower id, renormalised: as `route`) into ids and wts, and, with
// routeLog, the ids copied to routeLog[logOff ..].
// Launch: global = ceil(out / MV_ROWS) * NT, local = NT.
#define DEC_OUT(SUF, WT, DOT, LD)                                                                                    \
__kernel void dec_out_##SUF(__global const WT* w, __global const float* o, __global float* a, int n, int in,       \
                            int out, __global float* x, float alpha, float beta, __global const float* normW,     \
                            float eps, __global const WT* gate, int E, int k, __global int* ids,                  \
                            __global float* wts, __global int* routeLog, long logOff, int logIds,                  \
                            __global int* counter) {                                                               \
    __local float red[MV_ROWS * MAXN * MV_LANES];                                                                  \
    __local float logits[MAXN * 64];                                                                               \
    __local float rr[64 * 64];                                                                                     \
    __local int flag;                                                                                              \
    int tid = get_local_id(0), lane = tid % MV_LANES, rl = tid / MV_LANES;                                         \
    int row = get_group_id(0) * MV_ROWS + rl;                                                                      \
    float acc[MAXN];                                                                                               \
    int xr[MAXN];                                                                                                  \
    for (int p = 0; p < MAXN; p++) { acc[p] = 0.0f; xr[p] = p; }                                                   \
    if (row < out) DOT(w + (long) row * in, o, in, xr, n, lane, acc);                                              \
    lane_sum(red, rl, lane, n, acc);                                                                               \
    if (row < out && lane < n) a[(long) lane * out + row] = red[(rl * MAXN + lane) * MV_LANES];                    \
    int last = arrive(counter, get_num_groups(0), &flag);                                                          \
    TAIL(last)                                                                                                     \
    int h = out, lim = last ? out : 0;                                                                               \
    rows_residual_norm(x, alpha, a, a, 1, beta, 0, normW, eps, n, h, lim, red);                                      \
    barrier(CLK_GLOBAL_MEM_FENCE);                                                                                   \
    /* the router: 4 lane groups of 64 work-items, 16 (t, e) pairs each a round, lanes over a 64th of h each; */     \
    /* one tree over rr [64 pairs][64 lanes] a round */                                                              \
    int pairs = n * E, grp = tid / 64, ln = tid % 64;                                                                \
    for (int p0 = 0; p0 < pairs; p0 += 64) {                                                                         \
        float acc[16];                                                                                               \
        for (int s = 0; s < 16; s++) acc[s] = 0.0f;                                                                  \
        for (int i = ln; i < lim; i += 64) {                                                                         \
            for (int s = 0; s < 16; s++) {                                                                           \
                int pr = p0 + grp * 16 + s;                                                                          \
                if (pr < pairs) acc[s] += LD(gate[(long) (pr % E) * h + i]) * x[(long) (pr / E) * h + i];            \
            }                                                                                                        \
        }                                                                                                            \
        for (int s = 0; s < 16; s++) rr[(grp * 16 + s) * 64 + ln] = acc[s];                                          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                                \
        for (int st = 32; st > 0; st >>= 1) {                                                                        \
            if (ln < st) for (int s = 0; s < 16; s++) rr[(grp * 16 + s) * 64 + ln] += rr[(grp * 16 + s) * 64 + ln + st];\
            barrier(CLK_LOCAL_MEM_FENCE);                                                                            \
        }                                                                                                            \
        if (ln < 16 && p0 + grp * 16 + ln < pairs) logits[p0 + grp * 16 + ln] = rr[(grp * 16 + ln) * 64];            \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                                \
    }                                                                                                                \
    if (last && tid < n) {                                                                                         \
        int t = tid;                                                                                               \
        __local const float* lg = logits + t * E;                                                                  \
        top_k_local(lg, E, k, ids + t * k, wts + t * k);                                                           \
        if (logIds) for (int j = 0; j < k; j++) routeLog[logOff + t * k + j] = ids[t * k + j];                     \
    }                                                                                                              \
}

// The experts' down projection for the pairs of rows [0, n) (as moe_down, r0 = 0), then, in the tail, the MoE
// residual and the next norm for every row: x = normW * r / sqrt(mean(r^2) + eps), r = alpha * x + beta *
// sum_j wts[t, j] * out[t * k + j].
// Launch: global = E * ceil(hidden / MV_ROWS) * NT, local = NT.
#define DEC_DOWN(SUF, WT, DOT)                                                                                       \
__kernel void dec_down_##SUF(__global const WT* w2, __global const float* act, __global const int* ids,            \
                             __global float* out, int n, int k, int inter, int hidden, __global float* x,         \
                             float alpha, float beta, __global const float* wts, __global const float* normW,     \
                             float eps, __global int* counter) {                                                   \
    __local float red[MV_ROWS * MAXN * MV_LANES];                                                                  \
    __local int flag;                                                                                              \
    int blocks = (hidden + MV_ROWS - 1) / MV_ROWS;                                                                 \
    int e = get_group_id(0) / blocks;                                                                              \
    int tid = get_local_id(0), lane = tid % MV_LANES, rl = tid / MV_LANES;                                         \
    int row = (get_group_id(0) % blocks) * MV_ROWS + rl;                                                           \
    int pr[MAXN], xr[MAXN];                                                                                        \
    int np = pairs_of(ids, 0, n, k, e, pr, xr, 0);                                                                 \
    /* groups of experts no pair chose read no weights; lane_sum's barriers are taken by all (none in a branch) */ \
    float acc[MAXN];                                                                                               \
    for (int p = 0; p < MAXN; p++) acc[p] = 0.0f;                                                                  \
    if (np > 0 && row < hidden) DOT(w2 + ((long) e * hidden + row) * inter, act, inter, xr, np, lane, acc);        \
    lane_sum(red, rl, lane, np, acc);                                                                              \
    if (row < hidden && lane < np) out[(long) pick(pr, lane) * hidden + row] = red[(rl * MAXN + lane) * MV_LANES]; \
    int last = arrive(counter, get_num_groups(0), &flag);                                                          \
    TAIL(last)                                                                                                     \
    int lim = last ? hidden : 0;                                                                                     \
    rows_residual_norm(x, alpha, out, wts, k, beta, 1, normW, eps, n, hidden, lim, red);                             \
}

#define LD_BF16(v) widen(v)
DEC_PROJ(f32v, float, dot_f32v, dec_proj, 0)
DEC_PROJ(bf16v, ushort, dot_bf16v, dec_proj, 0)
DEC_PROJ(f32s, float, dot_f32s, dec_proj, 0)
DEC_PROJ(bf16s, ushort, dot_bf16s, dec_proj, 0)
DEC_PROJ(f32v, float, dot_f32v, dec_projr, 1)
DEC_PROJ(bf16v, ushort, dot_bf16v, dec_projr, 1)
DEC_PROJ(f32s, float, dot_f32s, dec_projr, 1)
DEC_PROJ(bf16s, ushort, dot_bf16s, dec_projr, 1)
DEC_OUT(f32v, float, dot_f32v, LD_F32)
DEC_OUT(bf16v, ushort, dot_bf16v, LD_BF16)
DEC_OUT(f32s, float, dot_f32s, LD_F32)
DEC_OUT(bf16s, ushort, dot_bf16s, LD_BF16)
DEC_DOWN(f32v, float, dot_f32v)
DEC_DOWN(bf16v, ushort, dot_bf16v)
DEC_DOWN(f32s, float, dot_f32s)
DEC_DOWN(bf16s, ushort, dot_bf16s)

// One lightning step of every row: S_t = exp(-lambda_h) S_t + k^T v; o = q S_t, S_t the state of row t's sequence in
// the pool (pool [slots, layers, stride], S at the start of a stride; this layer is `layer` of `layers`); then, in row t's tail, o_t =
// RMSNorm_w(o_t) * sigmoid(gate_t) over its H * D. qkv [n, H, 3D] SiLU-activated.
// Launch: global = n * H * ceil(D / 64) * NT, local = NT; group (t, h, ct) as lightning_step's (h, ct) for row t.
__kernel void dec_lightning(__global const float* qkv, __global const float* decay, __global float* pool,
                            long stride, int layer, int layers, __global const int* info, __global float* o,
                            __global const float* gate, __global const float* normW, float eps, int heads, int dim,
                            __global int* counters) {
    __local float part[NT];
    __local int flag;
    int tid = get_local_id(0), lane = tid % LS_COLS, slice = tid / LS_COLS;
    int colTiles = (dim + LS_COLS - 1) / LS_COLS, per = heads * colTiles;
    int t = get_group_id(0) / per, ct = (get_group_id(0) % per) % colTiles, h = (get_group_id(0) % per) / colTiles;
    int j = ct * LS_COLS + lane, hd = heads * dim;
    __global const float* q = qkv + (long) t * 3 * hd + (long) h * 3 * dim;
    __global const float* kk = q + dim;
    __global const float* v = q + 2 * dim;
    float ratio = exp(-decay[h]);
    float acc = j < dim ? lightning_column(pool + ((long) SLOT(info, t) * layers + layer) * stride + (long) h * dim * dim
                                           + j, dim, q, kk, v[j], ratio, slice, dim, LS_SLICES) : 0.0f;
    part[tid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (slice == 0 && j < dim) {
        float sum = 0.0f;
        for (int sl = 0; sl < LS_SLICES; sl++) sum += part[sl * LS_COLS + lane];
        o[(long) t * hd + (long) h * dim + j] = sum;
    }
    int last = arrive(counters + t, per, &flag);
    TAIL(last)
    __global float* ot = o + (long) t * hd;
    __global const float* gt = gate + (long) t * hd;
    int lim = last ? hd : 0;
    float ss = 0.0f;
    for (int i = tid; i < lim; i += NT) ss += ot[i] * ot[i];
    ss = group_sum(part, ss);
    float inv = 1.0f / sqrt(ss / hd + eps);
    for (int i = tid; i < lim; i += NT) ot[i] = (normW[i] * (ot[i] * inv)) * (1.0f / (1.0f + exp(-gt[i])));
}

// Decode attention of every row: row t's query (q [n, H, D], RoPE applied) over its cache's pos[t] + 1 rows, in
// splits of splitLen keys (partials o, m, l per (t, kv head, split, head of the group), as attn_split), combined in
// row t's tail into out [n, H, D]. Scores: work-item c scores key p0 + c of a tile of NT for the G heads; values:
// work-item (g, j) slots accumulate o[g][j] over the tile.
// Launch: global = n * KV * splits * NT, local = NT; group (t * KV + kvh) * splits + sp. G <= DA_MAXG, D <= DA_MAXD.
#define DD_SLOTS (DA_MAXG * DA_MAXD / NT)
__kernel void dec_attn(__global const float* q, __global const int* info, __global float* part, __global float* out,
                       int heads, int kvHeads, int dim, int splitLen, int splits, float scale,
                       __global int* counters, CACHE_ARGS(kc), CACHE_ARGS(vc)) {
    __local float lq[DA_MAXG * DA_MAXD];
    __local float ls[DA_MAXG * NT];
    __local float red[NT];
    __local float lm[DA_MAXG], lalpha[DA_MAXG], lsum[DA_MAXG];
    __local int flag;
    int tid = get_local_id(0);
    int sp = get_group_id(0) % splits, kvh = (get_group_id(0) / splits) % kvHeads;
    int t = get_group_id(0) / (splits * kvHeads);
    int G = heads / kvHeads, kvd = kvHeads * dim, len = POS(info, t) + 1;
    int k0 = sp * splitLen, k1 = min(k0 + splitLen, len);
    __global const float* kc = PICK8(kc, t);
    __global const float* vc = PICK8(vc, t);
    for (int idx = tid; idx < G * dim; idx += NT) lq[idx] = q[(long) t * heads * dim + (long) kvh * G * dim + idx] * scale;
    if (tid < DA_MAXG) { lm[tid] = DA_NEG; lsum[tid] = 0.0f; }
    float acc[DD_SLOTS];
    for (int s = 0; s < DD_SLOTS; s++) acc[s] = 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    // the whole split, whatever this row's length: the loop's bound, which its barriers sit in, must not come from
    // memory (PoCL, as TAIL); tiles past k1 are all masked and leave o, m and l as they were
    for (int p0 = k0; p0 < k0 + splitLen; p0 += NT) {
        int p = p0 + tid, cnt = max(0, min(NT, k1 - p0));
        for (int g = 0; g < G; g++) {
            float s = DA_NEG;
            if (p < k1) {
                __global const float* kr = kc + (long) p * kvd + kvh * dim;
                s = 0.0f;
                for (int i = 0; i < dim; i++) s += lq[g * dim + i] * kr[i];
            }
            ls[g * NT + tid] = s;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int g = 0; g < G; g++) {  // the tile's max of head g: a tree over NT
            red[tid] = ls[g * NT + tid];
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int st = NT / 2; st > 0; st >>= 1) {
                if (tid < st) red[tid] = max(red[tid], red[tid + st]);
                barrier(CLK_LOCAL_MEM_FENCE);
            }
            if (tid == 0) {
                float mNew = max(lm[g], red[0]);
                lalpha[g] = exp(lm[g] - mNew);
                lm[g] = mNew;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        for (int g = 0; g < G; g++) {
            float s = ls[g * NT + tid];
            ls[g * NT + tid] = s > 0.5f * DA_NEG ? exp(s - lm[g]) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int g = 0; g < G; g++) {  // the tile's sum of p of head g
            red[tid] = ls[g * NT + tid];
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int st = NT / 2; st > 0; st >>= 1) {
                if (tid < st) red[tid] += red[tid + st];
                barrier(CLK_LOCAL_MEM_FENCE);
            }
            if (tid == 0) lsum[g] = lsum[g] * lalpha[g] + red[0];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        for (int s = 0; s < DD_SLOTS; s++) {
            int e = tid + s * NT;
            if (e < G * dim) {
                int g = e / dim, j = e % dim;
                float sum = 0.0f;
                for (int c = 0; c < cnt; c++) sum += ls[g * NT + c] * vc[(long) (p0 + c) * kvd + kvh * dim + j];
                acc[s] = acc[s] * lalpha[g] + sum;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    long base = (((long) t * kvHeads + kvh) * splits + sp) * G * (dim + 2);
    for (int s = 0; s < DD_SLOTS; s++) {
        int e = tid + s * NT;
        if (e < G * dim) {
            int g = e / dim, j = e % dim;
            part[base + g * (dim + 2) + j] = acc[s];
            if (j == 0) {
                part[base + g * (dim + 2) + dim] = lm[g];
                part[base + g * (dim + 2) + dim + 1] = lsum[g];
            }
        }
    }
    if (!arrive(counters + t, kvHeads * splits, &flag)) return;  // no barrier follows
    long stride = (long) G * (dim + 2);
    for (int idx = tid; idx < heads * dim; idx += NT) {
        int j = idx % dim, hh = idx / dim, kh = hh / G, g = hh % G;
        long b = ((long) t * kvHeads + kh) * splits * stride + g * (dim + 2);
        float m = DA_NEG;
        for (int s = 0; s < splits; s++) m = max(m, part[b + s * stride + dim]);
        float num = 0.0f, den = 0.0f;
        for (int s = 0; s < splits; s++) {
            long o = b + s * stride;
            float wgt = exp(part[o + dim] - m);
            num += wgt * part[o + j];
            den += wgt * part[o + dim + 1];
        }
        out[(long) t * heads * dim + idx] = num / den;
    }
}

// The fused step without tails in its output and expert launches (FusedOps' "split" form): row t of the output
// projection's result a: x[t] = w * r / sqrt(mean(r^2) + eps), r = alpha x[t] + beta a[t]; then the router's logits
// x[t] . gate^T and top k into ids, wts (with logIds, also routeLog[logOff ..]), as `route`.
// Launch: global = n * NT, local = NT; group t. Each work-item's partial logits of 8 experts at a time, added by one
// tree over red8 [8][NT].
#define DEC_NORM_ROUTE(SUF, WT, LD)                                                                                  \
__kernel void dec_norm_route_##SUF(__global float* x, float alpha, __global const float* a, float beta,            \
                                   __global const float* normW, float eps, int h, __global const WT* gate, int E,  \
                                   int k, __global int* ids, __global float* wts, __global int* routeLog,          \
                                   long logOff, int logIds) {                                                      \
    __local float red8[8 * NT];                                                                                    \
    __local float lg[64];                                                                                          \
    int tid = get_local_id(0), t = get_group_id(0);                                                                \
    __global float* xt = x + (long) t * h;                                                                         \
    __global const float* at = a + (long) t * h;                                                                   \
    float ss = 0.0f;                                                                                               \
    for (int i = tid; i < h; i += NT) { float r = alpha * xt[i] + beta * at[i]; ss += r * r; }                     \
    ss = group_sum(red8, ss);                                                                                      \
    float inv = 1.0f / sqrt(ss / h + eps);                                                                         \
    for (int i = tid; i < h; i += NT) xt[i] = normW[i] * ((alpha * xt[i] + beta * at[i]) * inv);                   \
    barrier(CLK_GLOBAL_MEM_FENCE);                                                                                 \
    for (int e0 = 0; e0 < E; e0 += 8) {                                                                            \
        float acc[8];                                                                                              \
        for (int e = 0; e < 8; e++) acc[e] = 0.0f;                                                                 \
        for (int i = tid; i < h; i += NT) {                                                                        \
            float xi = xt[i];                                                                                      \
            for (int e = 0; e < 8; e++) if (e0 + e < E) acc[e] += LD(gate[(long) (e0 + e) * h + i]) * xi;         \
        }                                                                                                          \
        for (int e = 0; e < 8; e++) red8[e * NT + tid] = acc[e];                                                   \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                              \
        for (int st = NT / 2; st > 0; st >>= 1) {                                                                  \
            if (tid < st) for (int e = 0; e < 8; e++) red8[e * NT + tid] += red8[e * NT + tid + st];               \
            barrier(CLK_LOCAL_MEM_FENCE);                                                                          \
        }                                                                                                          \
        if (tid < 8 && e0 + tid < E) lg[e0 + tid] = red8[tid * NT];                                                \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                              \
    }                                                                                                              \
    if (tid == 0) {                                                                                                \
        top_k_local(lg, E, k, ids + t * k, wts + t * k);                                                           \
        if (logIds) for (int j = 0; j < k; j++) routeLog[logOff + t * k + j] = ids[t * k + j];                     \
    }                                                                                                              \
}
DEC_NORM_ROUTE(f32, float, LD_F32)
DEC_NORM_ROUTE(bf16, ushort, LD_BF16)

// ==== decode kernels v2 (-Dlightmesh.decode.kernels=v2, the default; v1 above) =====================================
// The same products and norms as matvec / moe_* / dec_proj* / dec_norm_route / residual_norm / dec_lightning, laid
// out for a wide GPU (an H200: 132 compute units of 64 warps each) at decode sizes:
// - matrix-vector products: one lane group of WL work-items (a warp on NVIDIA) streams one weight row (gate and up:
//   two rows), each lane 16-byte loads of the row's 8-element chunks lane, lane + WL, ..., 8 of them in flight; the
//   step's x rows are read through the cache (every lane group of the device reads the same few KB); the lanes'
//   partial sums are added within the lane group: NVIDIA's shfl.sync.bfly (no local memory, no barrier), elsewhere
//   (PoCL, and NVIDIA with -D LM_NO_SHFL) through local memory. A work-group holds WG rows, so an 8192-row product
//   is 1024 groups and a 2048-row one 256: every compute unit busy.
// - the norms and the router (one group a row, tiny work): the group's sums as a lane-group total and one pass over
//   the WG partials, not a tree of log2(NT) barriers each; the router's logits of 8 experts at a time, the same way.
// - the lightning step: a head's state is split over groups by rows as well as columns (partials of o added in the
//   row's tail), so a batch-1 step has a few hundred groups rather than 32.

#define WL 32
#define WG (NT / WL)

#if defined(LM_NVIDIA) && !defined(LM_NO_SHFL)
#define LM_SHFL 1
inline float xor_shfl(float v, int m) {
    uint r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(as_uint(v)), "r"(m));
    return as_float(r);
}
#endif

// acc[p] for p < np summed over the WL lanes of each lane group; every lane gets the totals. Every work-item of the
// group must call it with the same np (the fallback has barriers; the shuffle needs the whole warp). scratch: MAXN * NT
// floats (the fallback's; unused with the shuffle).
inline void lane_totals(float* acc, int np, __local float* scratch) {
#ifdef LM_SHFL
    for (int p = 0; p < MAXN; p++) {
        if (p < np) {
            float v = acc[p];
            for (int m = WL / 2; m > 0; m >>= 1) v += xor_shfl(v, m);
            acc[p] = v;
        }
    }
#else
    int tid = get_local_id(0), base = tid & ~(WL - 1);
    for (int p = 0; p < MAXN; p++) if (p < np) scratch[p * NT + tid] = acc[p];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int p = 0; p < MAXN; p++) {
        if (p < np) {
            float v = 0.0f;
            for (int l = 0; l < WL; l++) v += scratch[p * NT + base + l];
            acc[p] = v;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
}

// The sum of v over the work-group, to every work-item: lane-group totals, then the WG of them. red: NT floats.
inline float group_total(float v, __local float* red) {
#ifdef LM_SHFL
    int tid = get_local_id(0);
    for (int m = WL / 2; m > 0; m >>= 1) v += xor_shfl(v, m);
    if (tid % WL == 0) red[tid / WL] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    float s = 0.0f;
    for (int g = 0; g < WG; g++) s += red[g];
    barrier(CLK_LOCAL_MEM_FENCE);
    return s;
#else
    return group_sum(red, v);
#endif
}

// a[i] for a run-time i < MAXN, by constant indices (as pick)
inline float pickf(const float* a, int i) {
    float v = 0.0f;
    for (int s = 0; s < MAXN; s++) if (s == i) v = a[s];
    return v;
}

// Eight bf16 in a uint4 (16 bytes, as loaded) widened to fp32: element 2i is the low half of word i (little-endian),
// 2i + 1 the high half. A ushort8 load compiles to two 8-byte loads on NVIDIA (PTX vectors hold 4 elements), a uint4 to
// one 16-byte load.
inline float8 widen8u(uint4 u) {
    return (float8) (as_float(u.x << 16), as_float(u.x & 0xffff0000u), as_float(u.y << 16), as_float(u.y & 0xffff0000u),
                     as_float(u.z << 16), as_float(u.z & 0xffff0000u), as_float(u.w << 16), as_float(u.w & 0xffff0000u));
}

// acc0[p] += W0 . x[xr[p]] (and, R == 2, acc1[p] += W1 . x[xr[p]]) for p < np over lane `lane`'s chunks of the
// rows: R (1 or 2, a constant where inlined) rows of one lane group, each x chunk loaded once for both. bf16 as
// uint4 (in % 8 == 0), 8 loads in flight (8 chunks of one row, or 4 of each of two), kept raw until used (widened up
// front they take twice the registers). R == 2 halves the cache traffic of x, which at 8 rows of x is 16 bytes for
// each weight byte.
inline void dotr_bf16v(__global const ushort* w0, __global const ushort* w1, int R, __global const float* x, int in,
                       const int* xr, int np, int lane, float* acc0, float* acc1) {
    __global const uint4* a8 = (__global const uint4*) w0;
    __global const uint4* b8 = (__global const uint4*) w1;
    __global const float8* x8 = (__global const float8*) x;
    int in8 = in >> 3;
    int i = lane;
    if (R == 1) {
        for (; i + 7 * WL < in8; i += 8 * WL) {
            uint4 wv[8];
            for (int u = 0; u < 8; u++) wv[u] = a8[i + u * WL];
            for (int p = 0; p < MAXN; p++) {
                if (p < np) {
                    __global const float8* xp = x8 + (long) xr[p] * in8 + i;
                    float8 s = widen8u(wv[0]) * xp[0];
                    for (int u = 1; u < 8; u++) s = fma(widen8u(wv[u]), xp[u * WL], s);
                    acc0[p] += dot(s.lo, (float4) 1.0f) + dot(s.hi, (float4) 1.0f);
                }
            }
        }
    }
    for (; i + 3 * WL < in8; i += 4 * WL) {
        uint4 av[4], bv[4];
        for (int u = 0; u < 4; u++) {
            av[u] = a8[i + u * WL];
            if (R == 2) bv[u] = b8[i + u * WL];
        }
        for (int p = 0; p < MAXN; p++) {
            if (p < np) {
                __global const float8* xp = x8 + (long) xr[p] * in8 + i;
                float8 xv = xp[0];
                float8 sa = widen8u(av[0]) * xv, sb = 0.0f;
                if (R == 2) sb = widen8u(bv[0]) * xv;
                for (int u = 1; u < 4; u++) {
                    xv = xp[u * WL];
                    sa = fma(widen8u(av[u]), xv, sa);
                    if (R == 2) sb = fma(widen8u(bv[u]), xv, sb);
                }
                acc0[p] += dot(sa.lo, (float4) 1.0f) + dot(sa.hi, (float4) 1.0f);
                if (R == 2) acc1[p] += dot(sb.lo, (float4) 1.0f) + dot(sb.hi, (float4) 1.0f);
            }
        }
    }
    for (; i < in8; i += WL) {
        float8 a = widen8u(a8[i]), b = 0.0f;
        if (R == 2) b = widen8u(b8[i]);
        for (int p = 0; p < MAXN; p++) {
            if (p < np) {
                float8 xv = x8[(long) xr[p] * in8 + i];
                float8 sa = a * xv;
                acc0[p] += dot(sa.lo, (float4) 1.0f) + dot(sa.hi, (float4) 1.0f);
                if (R == 2) {
                    float8 sb = b * xv;
                    acc1[p] += dot(sb.lo, (float4) 1.0f) + dot(sb.hi, (float4) 1.0f);
                }
            }
        }
    }
}

// the same with fp32 weights as float4 (in % 4 == 0)
inline void dotr_f32v(__global const float* w0, __global const float* w1, int R, __global const float* x, int in,
                      const int* xr, int np, int lane, float* acc0, float* acc1) {
    __global const float4* a4 = (__global const float4*) w0;
    __global const float4* b4 = (__global const float4*) w1;
    __global const float4* x4 = (__global const float4*) x;
    int in4 = in >> 2;
    int i = lane;
    for (; i + 3 * WL < in4; i += 4 * WL) {
        float4 av[4], bv[4];
        for (int u = 0; u < 4; u++) {
            av[u] = a4[i + u * WL];
            if (R == 2) bv[u] = b4[i + u * WL];
        }
        for (int p = 0; p < MAXN; p++) {
            if (p < np) {
                __global const float4* xp = x4 + (long) xr[p] * in4 + i;
                float4 xv = xp[0];
                float4 sa = av[0] * xv, sb = 0.0f;
                if (R == 2) sb = bv[0] * xv;
                for (int u = 1; u < 4; u++) {
                    xv = xp[u * WL];
                    sa = fma(av[u], xv, sa);
                    if (R == 2) sb = fma(bv[u], xv, sb);
                }
                acc0[p] += dot(sa, (float4) 1.0f);
                if (R == 2) acc1[p] += dot(sb, (float4) 1.0f);
            }
        }
    }
    for (; i < in4; i += WL) {
        float4 a = a4[i], b = 0.0f;
        if (R == 2) b = b4[i];
        for (int p = 0; p < MAXN; p++) {
            if (p < np) {
                float4 xv = x4[(long) xr[p] * in4 + i];
                acc0[p] += dot(a, xv);
                if (R == 2) acc1[p] += dot(b, xv);
            }
        }
    }
}

// scalar rows of any length (lane strides of WL)
inline void dotr_f32s(__global const float* w0, __global const float* w1, int R, __global const float* x, int in,
                      const int* xr, int np, int lane, float* acc0, float* acc1) {
    for (int i = lane; i < in; i += WL) {
        float a = w0[i], b = R == 2 ? w1[i] : 0.0f;
        for (int p = 0; p < MAXN; p++) {
            if (p < np) {
                float xv = x[(long) xr[p] * in + i];
                acc0[p] += a * xv;
                if (R == 2) acc1[p] += b * xv;
            }
        }
    }
}

inline void dotr_bf16s(__global const ushort* w0, __global const ushort* w1, int R, __global const float* x, int in,
                       const int* xr, int np, int lane, float* acc0, float* acc1) {
    for (int i = lane; i < in; i += WL) {
        float a = widen(w0[i]), b = R == 2 ? widen(w1[i]) : 0.0f;
        for (int p = 0; p < MAXN; p++) {
            if (p < np) {
                float xv = x[(long) xr[p] * in + i];
                acc0[p] += a * xv;
                if (R == 2) acc1[p] += b * xv;
            }
        }
    }
}

// The rope tail of dec_projr (v1) and dec_projr2: in the last group (lim > 0), rotate q and k of every row at its
// position and append row t's k and v to its caches at row pos[t]. Every work-item of every group calls it.
#define PROJ_ROPE_TAIL(last)                                                                                          \
    int kvd = kvHeads * dim;                                                                                          \
    for (int idx = tid; idx < (last ? n * (heads + kvHeads) * hr : 0); idx += NT) {                                   \
        int i = idx % hr, hh = (idx / hr) % (heads + kvHeads), t = idx / (hr * (heads + kvHeads));                    \
        __global float* r = hh < heads ? ya + ((long) t * heads + hh) * dim                                           \
                : yb + (long) t * kvd + (hh - heads) * dim;                                                           \
        rope_pair(r, i, hr, (float) POS(info, t), invFreq);                                                           \
    }                                                                                                                 \
    barrier(CLK_GLOBAL_MEM_FENCE);                                                                                    \
    for (int idx = tid; idx < (last ? n * kvd : 0); idx += NT) {                                                      \
        int t = idx / kvd, c = idx % kvd;                                                                             \
        long at = (long) POS(info, t) * kvd + c;                                                                      \
        PICK8(kc, t)[at] = yb[idx];                                                                                   \
        PICK8(vc, t)[at] = yc[idx];                                                                                   \
    }

// y[t, row] = W[row] . x[t] for t < n (n <= MAXN), as matvec; each lane group R rows (row R * lg + r). Named
// matvec2_* (R 1) and matvec2x2_* (R 2). Launch: global = ceil(out / (WG * R)) * NT, local = NT.
// Down projection, as moe_down (moe_down2_*, moe_down2x2_*). Launch: global = E * ceil(hidden / (WG * R)) * NT.
// Projections of one input, as dec_proj / dec_projr (dec_proj2*, dec_projr2*, rows counted over the two or three
// weights in turn). Launch: global = ceil((outA + outB + outC) / (WG * R)) * NT, local = NT.
#define MV2_FAMILY(SUF, WT, DOT, R, TAG)                                                                             \
__kernel void matvec2##TAG##_##SUF(__global const WT* restrict w, long wOff, __global const float* restrict x,       \
                                   long xOff, __global float* restrict y, long yOff, int n, int in, int out) {     \
    __local float scratch[MAXN * NT];                                                                              \
    int tid = get_local_id(0), lane = tid % WL, row = (get_group_id(0) * WG + tid / WL) * R;                       \
    float acc0[MAXN], acc1[MAXN];                                                                                  \
    int xr[MAXN];                                                                                                  \
    for (int p = 0; p < MAXN; p++) { acc0[p] = 0.0f; acc1[p] = 0.0f; xr[p] = p; }                                  \
    __global const WT* w0 = w + wOff + (long) row * in;                                                            \
    if (row < out) DOT(w0, row + 1 < out ? w0 + in : w0, R, x + xOff, in, xr, n, lane, acc0, acc1);                \
    lane_totals(acc0, n, scratch);                                                                                 \
    if (R == 2) lane_totals(acc1, n, scratch);                                                                     \
    if (row < out && lane < n) y[yOff + (long) lane * out + row] = pickf(acc0, lane);                              \
    if (R == 2 && row + 1 < out && lane < n) y[yOff + (long) lane * out + row + 1] = pickf(acc1, lane);            \
}                                                                                                                  \
__kernel void moe_down2##TAG##_##SUF(__global const WT* restrict w2, __global const float* restrict act,            \
                                     __global const int* ids, __global float* restrict out, int r0, int rows,      \
                                     int k, int inter, int hidden) {                                               \
    __local float scratch[MAXN * NT];                                                                              \
    int blocks = (hidden + WG * R - 1) / (WG * R);                                                                 \
    int e = get_group_id(0) / blocks;                                                                              \
    int tid = get_local_id(0), lane = tid % WL, row = ((get_group_id(0) % blocks) * WG + tid / WL) * R;            \
    int pr[MAXN], xr[MAXN];                                                                                        \
    int np = pairs_of(ids, r0, rows, k, e, pr, xr, 0);                                                             \
    if (np == 0) return;                                                                                           \
    float acc0[MAXN], acc1[MAXN];                                                                                  \
    for (int p = 0; p < MAXN; p++) { acc0[p] = 0.0f; acc1[p] = 0.0f; }                                             \
    __global const WT* w0 = w2 + ((long) e * hidden + row) * inter;                                                \
    if (row < hidden) DOT(w0, row + 1 < hidden ? w0 + inter : w0, R, act, inter, xr, np, lane, acc0, acc1);        \
    lane_totals(acc0, np, scratch);                                                                                \
    if (R == 2) lane_totals(acc1, np, scratch);                                                                    \
    if (row < hidden && lane < np) out[(long) pick(pr, lane) * hidden + row] = pickf(acc0, lane);                  \
    if (R == 2 && row + 1 < hidden && lane < np) out[(long) pick(pr, lane) * hidden + row + 1] = pickf(acc1, lane);\
}

// Gate and up of the experts for the pairs of rows [r0, r0 + rows), as moe_gate_up: one lane group a (expert, row),
// its W1 and W3 rows streamed together (each x chunk loaded once for both).
// Launch: global = E * ceil(inter / WG) * NT, local = NT.
#define GATE_UP2(SUF, WT, DOT)                                                                                       \
__kernel void moe_gate_up2_##SUF(__global const WT* restrict w1, __global const WT* restrict w3,                   \
                                 __global const float* restrict x, __global const int* ids,                        \
                                 __global float* restrict act, int r0, int rows, int k, int inter, int hidden) {   \
    __local float scratch[MAXN * NT];                                                                              \
    int blocks = (inter + WG - 1) / WG;                                                                            \
    int e = get_group_id(0) / blocks;                                                                              \
    int tid = get_local_id(0), lane = tid % WL, row = (get_group_id(0) % blocks) * WG + tid / WL;                  \
    int pr[MAXN], xr[MAXN];                                                                                        \
    int np = pairs_of(ids, r0, rows, k, e, pr, xr, 1);                                                             \
    if (np == 0) return;                                                                                           \
    float g[MAXN], u[MAXN];                                                                                        \
    for (int p = 0; p < MAXN; p++) { g[p] = 0.0f; u[p] = 0.0f; }                                                   \
    if (row < inter) {                                                                                             \
        long wr = ((long) e * inter + row) * hidden;                                                               \
        DOT(w1 + wr, w3 + wr, 2, x, hidden, xr, np, lane, g, u);                                                   \
    }                                                                                                              \
    lane_totals(g, np, scratch);                                                                                   \
    lane_totals(u, np, scratch);                                                                                   \
    if (row < inter && lane < np) {                                                                                \
        float gs = pickf(g, lane), us = pickf(u, lane);                                                            \
        act[(long) pick(pr, lane) * inter + row] = gs / (1.0f + exp(-gs)) * us;                                    \
    }                                                                                                              \
}

// weight row `row` of the two or three of a projection launch (rows counted over wa, wb, wc in turn)
#define PROJ_ROW(row) ((row) < outA ? wa + (long) (row) * in : (row) < outA + outB ? wb + (long) ((row) - outA) * in \
                       : wc + (long) ((row) - outA - outB) * in)
#define PROJ_STORE(row, v)                                                                                           \
    if ((row) < outA) ya[(long) lane * outA + (row)] = siluA ? (v) / (1.0f + exp(-(v))) : (v);                     \
    else if ((row) < outA + outB) yb[(long) lane * outB + (row) - outA] = (v);                                     \
    else yc[(long) lane * outC + (row) - outA - outB] = (v);

#define DEC_PROJ2(SUF, WT, DOT, KNAME, ROPE, R)                                                                      \
__kernel void KNAME##_##SUF(__global const WT* restrict wa, __global const WT* restrict wb,                        \
                             __global const WT* restrict wc, __global const float* restrict x, __global float* ya, \
                             __global float* yb, __global float* yc, int n, int in, int outA, int outB, int outC,  \
                             int siluA, __global const int* info, __global const float* invFreq, int heads,        \
                             int kvHeads, int dim, int hr, __global int* counter, CACHE_ARGS(kc), CACHE_ARGS(vc)) {\
    __local float scratch[MAXN * NT];                                                                              \
    __local int flag;                                                                                              \
    int tid = get_local_id(0), lane = tid % WL, row = (get_group_id(0) * WG + tid / WL) * R;                       \
    int total = outA + outB + outC;                                                                                \
    float acc0[MAXN], acc1[MAXN];                                                                                  \
    int xr[MAXN];                                                                                                  \
    for (int p = 0; p < MAXN; p++) { acc0[p] = 0.0f; acc1[p] = 0.0f; xr[p] = p; }                                  \
    if (row < total) {                                                                                             \
        __global const WT* w0 = PROJ_ROW(row);                                                                     \
        DOT(w0, R == 2 && row + 1 < total ? PROJ_ROW(row + 1) : w0, R, x, in, xr, n, lane, acc0, acc1);            \
    }                                                                                                              \
    lane_totals(acc0, n, scratch);                                                                                 \
    if (R == 2) lane_totals(acc1, n, scratch);                                                                     \
    if (row < total && lane < n) {                                                                                 \
        float v = pickf(acc0, lane);                                                                               \
        PROJ_STORE(row, v)                                                                                         \
    }                                                                                                              \
    if (R == 2 && row + 1 < total && lane < n) {                                                                   \
        float v = pickf(acc1, lane);                                                                               \
        PROJ_STORE(row + 1, v)                                                                                     \
    }                                                                                                              \
    if (!ROPE) return;                                                                                             \
    int last = arrive(counter, get_num_groups(0), &flag);                                                          \
    TAIL(last)                                                                                                     \
    PROJ_ROPE_TAIL(last)                                                                                           \
}

#define V2_KERNELS(SUF, WT, DOT)                                                                                     \
MV2_FAMILY(SUF, WT, DOT, 1, )                                                                                       \
MV2_FAMILY(SUF, WT, DOT, 2, x2)                                                                                     \
GATE_UP2(SUF, WT, DOT)                                                                                              \
DEC_PROJ2(SUF, WT, DOT, dec_proj2, 0, 1)                                                                            \
DEC_PROJ2(SUF, WT, DOT, dec_projr2, 1, 1)                                                                           \
DEC_PROJ2(SUF, WT, DOT, dec_proj2x2, 0, 2)                                                                          \
DEC_PROJ2(SUF, WT, DOT, dec_projr2x2, 1, 2)
V2_KERNELS(f32v, float, dotr_f32v)
V2_KERNELS(bf16v, ushort, dotr_bf16v)
V2_KERNELS(f32s, float, dotr_f32s)
V2_KERNELS(bf16s, ushort, dotr_bf16s)

// As dec_norm_route (group t: row t's residual, norm, router logits and top k), the sums as group_total and
// lane_totals. Launch: global = n * NT, local = NT.
#define DEC_NORM_ROUTE2(SUF, WT, LD, LD8)                                                                            \
__kernel void dec_norm_route2_##SUF(__global float* x, float alpha, __global const float* a, float beta,           \
                                    __global const float* normW, float eps, int h, __global const WT* gate, int E, \
                                    int k, __global int* ids, __global float* wts, __global int* routeLog,         \
                                    long logOff, int logIds) {                                                     \
    __local float scratch[MAXN * NT];                                                                              \
    __local float lgp[WG * 64];                                                                                    \
    __local float lg[64];                                                                                          \
    int tid = get_local_id(0), t = get_group_id(0), lane = tid % WL, wg = tid / WL;                                \
    __global float* xt = x + (long) t * h;                                                                         \
    __global const float* at = a + (long) t * h;                                                                   \
    /* h % 8 == 0: 8 consecutive elements a work-item (one pass at h = 2048: every load in flight at once) */       \
    int vec = (h & 7) == 0;                                                                                        \
    float ss = 0.0f;                                                                                               \
    if (vec) {                                                                                                     \
        for (int i = tid * 8; i < h; i += NT * 8) {                                                                \
            float8 r = alpha * vload8(0, xt + i) + beta * vload8(0, at + i);                                       \
            ss += dot(r.lo, r.lo) + dot(r.hi, r.hi);                                                               \
        }                                                                                                          \
    } else {                                                                                                       \
        for (int i = tid; i < h; i += NT) { float r = alpha * xt[i] + beta * at[i]; ss += r * r; }                 \
    }                                                                                                              \
    ss = group_total(ss, scratch);                                                                                 \
    float inv = 1.0f / sqrt(ss / h + eps);                                                                         \
    if (vec) {                                                                                                     \
        for (int i = tid * 8; i < h; i += NT * 8)                                                                  \
            vstore8(vload8(0, normW + i) * ((alpha * vload8(0, xt + i) + beta * vload8(0, at + i)) * inv), 0, xt + i);\
    } else {                                                                                                       \
        for (int i = tid; i < h; i += NT) xt[i] = normW[i] * ((alpha * xt[i] + beta * at[i]) * inv);               \
    }                                                                                                              \
    /* each work-item reads back only the elements it wrote */                                                     \
    for (int e0 = 0; e0 < E; e0 += 8) {                                                                            \
        float acc[MAXN];                                                                                           \
        for (int e = 0; e < MAXN; e++) acc[e] = 0.0f;                                                              \
        if (vec) {                                                                                                 \
            for (int i = tid * 8; i < h; i += NT * 8) {                                                            \
                float8 xi = vload8(0, xt + i);                                                                     \
                for (int e = 0; e < 8; e++) {                                                                      \
                    if (e0 + e < E) {                                                                              \
                        float8 s = LD8(gate + (long) (e0 + e) * h + i) * xi;                                       \
                        acc[e] += dot(s.lo, (float4) 1.0f) + dot(s.hi, (float4) 1.0f);                             \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
        } else {                                                                                                   \
            for (int i = tid; i < h; i += NT) {                                                                    \
                float xi = xt[i];                                                                                  \
                for (int e = 0; e < 8; e++) if (e0 + e < E) acc[e] += LD(gate[(long) (e0 + e) * h + i]) * xi;     \
            }                                                                                                      \
        }                                                                                                          \
        lane_totals(acc, 8, scratch);                                                                              \
        if (lane == 0) for (int e = 0; e < 8; e++) if (e0 + e < E) lgp[wg * 64 + e0 + e] = acc[e];                 \
    }                                                                                                              \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    if (tid < E) {                                                                                                 \
        float s = 0.0f;                                                                                            \
        for (int g = 0; g < WG; g++) s += lgp[g * 64 + tid];                                                       \
        lg[tid] = s;                                                                                               \
    }                                                                                                              \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    if (tid == 0) {                                                                                                \
        top_k_local(lg, E, k, ids + t * k, wts + t * k);                                                           \
        if (logIds) for (int j = 0; j < k; j++) routeLog[logOff + t * k + j] = ids[t * k + j];                     \
    }                                                                                                              \
}
#define LD8_F32(p) vload8(0, p)
#define LD8_BF16(p) widen8(vload8(0, p))
DEC_NORM_ROUTE2(f32, float, LD_F32, LD8_F32)
DEC_NORM_ROUTE2(bf16, ushort, LD_BF16, LD8_BF16)

// residual_at of 8 consecutive elements i .. i + 7 (dim % 8 == 0)
inline float8 residual_at8(__global const float* x, float alpha, __global const float* upd, __global const float* wts,
                           int k, float beta, int hasWeights, int t, int dim, int i) {
    float8 u;
    if (hasWeights) {
        u = 0.0f;
        for (int j = 0; j < k; j++) u += wts[t * k + j] * vload8(0, upd + ((long) t * k + j) * dim + i);
    } else {
        u = vload8(0, upd + (long) t * dim + i);
    }
    return alpha * vload8(0, x + (long) t * dim + i) + beta * u;
}

// As residual_norm (group t: row t), the sum of squares as group_total. Launch: global = rows * NT, local = NT.
__kernel void residual_norm2(__global const float* x, float alpha, __global const float* upd,
                             __global const float* wts, int k, float beta, int hasWeights, __global const float* w,
                             float eps, __global float* out, int dim) {
    __local float red[NT];
    int tid = get_local_id(0), t = get_group_id(0);
    int vec = (dim & 7) == 0;  // 8 consecutive elements a work-item, as dec_norm_route2
    float ss = 0.0f;
    if (vec) {
        for (int i = tid * 8; i < dim; i += NT * 8) {
            float8 h = residual_at8(x, alpha, upd, wts, k, beta, hasWeights, t, dim, i);
            ss += dot(h.lo, h.lo) + dot(h.hi, h.hi);
        }
    } else {
        for (int i = tid; i < dim; i += NT) {
            float h = residual_at(x, alpha, upd, wts, k, beta, hasWeights, t, dim, i);
            ss += h * h;
        }
    }
    ss = group_total(ss, red);
    float inv = 1.0f / sqrt(ss / dim + eps);
    if (vec) {
        for (int i = tid * 8; i < dim; i += NT * 8) {
            float8 h = residual_at8(x, alpha, upd, wts, k, beta, hasWeights, t, dim, i);
            vstore8(vload8(0, w + i) * (h * inv), 0, out + (long) t * dim + i);
        }
    } else {
        for (int i = tid; i < dim; i += NT) {
            float h = residual_at(x, alpha, upd, wts, k, beta, hasWeights, t, dim, i);
            out[(long) t * dim + i] = w[i] * (h * inv);
        }
    }
}

// As dec_lightning, with each head's rows split over `splits` groups: group (t, h, ct, rs) updates rows
// [rs * per, (rs + 1) * per) of columns ct * 64 + lane of row t's state (per = ceil(D / splits)) and writes its part
// of o into part [n, splits, H * D]; row t's tail (the last of its groups) adds the splits' parts into o and applies
// the norm and the gate. Launch: global = n * H * ceil(D / 64) * splits * NT, local = NT.
__kernel void dec_lightning2(__global const float* qkv, __global const float* decay, __global float* pool,
                             long stride, int layer, int layers, __global const int* info, __global float* o,
                             __global const float* gate, __global const float* normW, float eps, int heads, int dim,
                             __global int* counters, __global float* part, int splits) {
    __local float red[NT];
    __local int flag;
    int tid = get_local_id(0), lane = tid % LS_COLS, slice = tid / LS_COLS;
    int colTiles = (dim + LS_COLS - 1) / LS_COLS, per = heads * colTiles * splits;
    int g = get_group_id(0) % per, t = get_group_id(0) / per;
    int rs = g % splits, ct = (g / splits) % colTiles, h = g / (splits * colTiles);
    int j = ct * LS_COLS + lane, hd = heads * dim, rows = (dim + splits - 1) / splits;
    int i0 = rs * rows, i1 = min(dim, i0 + rows);
    __global const float* q = qkv + (long) t * 3 * hd + (long) h * 3 * dim;
    __global const float* kk = q + dim;
    __global const float* v = q + 2 * dim;
    float ratio = exp(-decay[h]);
    float acc = j < dim ? lightning_column(pool + ((long) SLOT(info, t) * layers + layer) * stride + (long) h * dim * dim
                                           + j, dim, q, kk, v[j], ratio, i0 + slice, i1, LS_SLICES) : 0.0f;
    red[tid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (slice == 0 && j < dim) {
        float sum = 0.0f;
        for (int sl = 0; sl < LS_SLICES; sl++) sum += red[sl * LS_COLS + lane];
        part[((long) t * splits + rs) * hd + (long) h * dim + j] = sum;
    }
    int last = arrive(counters + t, per, &flag);
    TAIL(last)
    __global float* ot = o + (long) t * hd;
    __global const float* gt = gate + (long) t * hd;
    __global const float* pt = part + (long) t * splits * hd;
    int lim = last ? hd : 0;
    int vec = (hd & 7) == 0;  // 8 consecutive elements a work-item: at H * D = 2048 every part's load in flight at once
    float ss = 0.0f;
    if (vec) {
        for (int i = tid * 8; i < lim; i += NT * 8) {
            float8 s = 0.0f;
            for (int r = 0; r < splits; r++) s += vload8(0, pt + (long) r * hd + i);
            vstore8(s, 0, ot + i);
            ss += dot(s.lo, s.lo) + dot(s.hi, s.hi);
        }
    } else {
        for (int i = tid; i < lim; i += NT) {
            float s = 0.0f;
            for (int r = 0; r < splits; r++) s += pt[(long) r * hd + i];
            ot[i] = s;
            ss += s * s;
        }
    }
    ss = group_total(ss, red);
    float inv = 1.0f / sqrt(ss / hd + eps);
    // each work-item reads back only the elements it wrote (the same mapping as above)
    if (vec) {
        for (int i = tid * 8; i < lim; i += NT * 8) {
            float8 g = vload8(0, gt + i);
            vstore8((vload8(0, normW + i) * (vload8(0, ot + i) * inv)) * (1.0f / (1.0f + exp(-g))), 0, ot + i);
        }
    } else {
        for (int i = tid; i < lim; i += NT) ot[i] = (normW[i] * (ot[i] * inv)) * (1.0f / (1.0f + exp(-gt[i])));
    }
}
