// ---- grouped experts, fp32 products (experts.cl, built after resident.cl in the same program: its GEMM's tile
// scheme with tile sizes of its own, and resident.cl's loaders ldx4, ldw4_*) ------------------------------------
// A prefill chunk's MoE for every chosen expert of one stacked set (w1, w3 [E, I, h], w2 [E, h, I]) in two launches,
// not six per expert: the pairs (token, chosen expert) are grouped by expert on the host, and the grouped order's row
// i < count has its token row tokenRow[i] and its pair pairIndex[i]. The host cuts each expert's rows into row tiles
// of at most XF_M = 128 rows and writes one descriptor per row tile into grp[0 .. 3 * tiles): the expert's slot in
// the set, the tile's first row (in the grouped order) and its rows. tokenRow and pairIndex follow in the same int
// buffer at tokOff and pairOff. Work-group g takes row tile g / tilesN and column tile g % tilesN.
//
// moe_grouped_up_*: act[i, o] = SiLU(x[tokenRow[i]] . W1_e[o]) * (x[tokenRow[i]] . W3_e[o]) for the tile's rows i, o in
// a 64-column tile: the B tile's 128 rows are W1 rows o0 .. o0 + 63 and W3 rows o0 .. o0 + 63, so that a
// work-item's columns j and j + 4 of the GEMM's 8 (tx*4 + j and 64 + tx*4 + j) are g and u of one output. A rows are
// read through tokenRow (no gather pass). Launch: global = tiles * ceil(I / 64) * NT, local = NT.
// moe_grouped_down_*: pairs[pairIndex[i], o] = act[i] . W2_e[o]: the tile's rows of act are contiguous; the
// epilogue writes each row into its pair's row (no scatter pass). Launch: global = tiles * ceil(h / 128) * NT,
// local = NT.

#define XF_NT 256          // work-items of a group (ResidentOps.NT): 16 x 16, 8 x 8 outputs each
#define XF_M 128           // rows of a tile (GroupedTiles.TILE_ROWS)
#define XF_N 128           // columns of the B tile (the down kernel's outputs; the gate-up kernel's 64 of W1 and W3)
#define XF_K 16
#define XF_LD (XF_M + 4)

// a float4 of row r (k..k+3 of the tile) stored k-major into a[XF_K][XF_LD]
inline void xf_st4(__local float* a, int r, int kq, float4 v) {
    a[(kq * 4) * XF_LD + r] = v.x;
    a[(kq * 4 + 1) * XF_LD + r] = v.y;
    a[(kq * 4 + 2) * XF_LD + r] = v.z;
    a[(kq * 4 + 3) * XF_LD + r] = v.w;
}

// x[row][k..k+3] for row >= 0 (a token row read through the indirection), zeros for row < 0 (past the tile).
inline float4 ldrow4(__global const float* x, int row, int k, int in) {
    return row < 0 ? (float4) 0.0f : ldx4(x, row, row + 1, k, in);
}

#define MOE_GROUPED_TILE(LDA0, LDA1, LDB0, LDB1) /* the loads: expressions of kq, the k of the quad */                \
    __local float ax[2][XF_K * XF_LD];                                                                                \
    __local float aw[2][XF_K * XF_LD];                                                                                \
    int lr0 = tid / 4, lr1 = (tid + XF_NT) / 4, lq = tid % 4;                                                         \
    int kq = lq * 4;                                                                                                  \
    float4 px0 = LDA0, px1 = LDA1, pw0 = LDB0, pw1 = LDB1;                                                            \
    xf_st4(ax[0], lr0, lq, px0); xf_st4(ax[0], lr1, lq, px1);                                                         \
    xf_st4(aw[0], lr0, lq, pw0); xf_st4(aw[0], lr1, lq, pw1);                                                         \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                     \
    float acc[8][8];                                                                                                  \
    for (int i = 0; i < 8; i++) for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;                                         \
    int tiles = (in + XF_K - 1) / XF_K;                                                                               \
    for (int t = 0; t < tiles; t++) {                                                                                 \
        int cur = t & 1;                                                                                              \
        if (t + 1 < tiles) {                                                                                          \
            kq = (t + 1) * XF_K + lq * 4;                                                                             \
            px0 = LDA0; px1 = LDA1; pw0 = LDB0; pw1 = LDB1;                                                           \
        }                                                                                                             \
        __local const float* a = ax[cur];                                                                             \
        __local const float* b = aw[cur];                                                                             \
        for (int kk = 0; kk < XF_K; kk++) {                                                                           \
            float4 a0 = vload4(0, a + kk * XF_LD + ty * 4), a1 = vload4(0, a + kk * XF_LD + XF_M / 2 + ty * 4);       \
            float4 b0 = vload4(0, b + kk * XF_LD + tx * 4), b1 = vload4(0, b + kk * XF_LD + XF_N / 2 + tx * 4);       \
            float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};                                           \
            float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};                                           \
            for (int i = 0; i < 8; i++) for (int j = 0; j < 8; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);         \
        }                                                                                                             \
        if (t + 1 < tiles) {                                                                                          \
            xf_st4(ax[cur ^ 1], lr0, lq, px0); xf_st4(ax[cur ^ 1], lr1, lq, px1);                                     \
            xf_st4(aw[cur ^ 1], lr0, lq, pw0); xf_st4(aw[cur ^ 1], lr1, lq, pw1);                                     \
        }                                                                                                             \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                                 \
    }

#define MOE_GATE_UP(SUF, WT, LDW)                                                                                     \
__kernel void moe_grouped_up_##SUF(__global const WT* w1, __global const WT* w3, __global const float* x,             \
                                __global const int* grp, int tokOff, __global float* act, int tilesN, int inter,      \
                                int hidden) {                                                                         \
    int tid = get_local_id(0), tx = tid % 16, ty = tid / 16, gid = get_group_id(0), rt = gid / tilesN;                \
    int slot = grp[3 * rt], r0 = grp[3 * rt + 1], n = grp[3 * rt + 2], o0 = (gid % tilesN) * (XF_N / 2);              \
    if (n == 0) return;  /* a tile of no rows (device grouping pads the table): the whole group leaves */             \
    long wOff = (long) slot * inter * hidden;                                                                         \
    w1 += wOff;                                                                                                       \
    w3 += wOff;                                                                                                       \
    int in = hidden;                                                                                                  \
    /* the token rows of this work-item's two load rows, -1 past the tile */                                          \
    int xi0 = tid / 4, xi1 = (tid + XF_NT) / 4;  /* the tile rows this work-item loads (lr0, lr1 below) */            \
    int xr0 = xi0 < n ? grp[tokOff + r0 + xi0] : -1, xr1 = xi1 < n ? grp[tokOff + r0 + xi1] : -1;                     \
    /* B rows 0 .. 63: W1 rows o0 + r; 64 .. 127: W3 rows o0 + r - 64 (lr0 < 64 <= lr1) */                            \
    MOE_GROUPED_TILE(ldrow4(x, xr0, kq, in), ldrow4(x, xr1, kq, in), LDW(w1, o0 + lr0, inter, kq, in),                \
                     LDW(w3, o0 + lr1 - XF_N / 2, inter, kq, in))                                                     \
    for (int i = 0; i < 8; i++) {                                                                                     \
        int m = i < 4 ? ty * 4 + i : XF_M / 2 + ty * 4 + i - 4;                                                       \
        if (m >= n) continue;                                                                                         \
        __global float* ar = act + (long) (r0 + m) * inter;                                                           \
        for (int j = 0; j < 4; j++) {                                                                                 \
            int o = o0 + tx * 4 + j;                                                                                  \
            float g = acc[i][j];                                                                                      \
            if (o < inter) ar[o] = g / (1.0f + exp(-g)) * acc[i][j + 4];                                              \
        }                                                                                                             \
    }                                                                                                                 \
}

#define MOE_DOWN(SUF, WT, LDW)                                                                                        \
__kernel void moe_grouped_down_##SUF(__global const WT* w2, __global const float* act, __global const int* grp,       \
                             int pairOff, __global float* pairs, int tilesN, int inter, int hidden) {                 \
    int tid = get_local_id(0), tx = tid % 16, ty = tid / 16, gid = get_group_id(0), rt = gid / tilesN;                \
    int slot = grp[3 * rt], r0 = grp[3 * rt + 1], n = grp[3 * rt + 2], o0 = (gid % tilesN) * XF_N;                    \
    if (n == 0) return;  /* a tile of no rows (device grouping pads the table): the whole group leaves */             \
    w2 += (long) slot * inter * hidden;                                                                               \
    __global const float* x = act + (long) r0 * inter;                                                                \
    int in = inter;                                                                                                   \
    MOE_GROUPED_TILE(ldx4(x, lr0, n, kq, in), ldx4(x, lr1, n, kq, in), LDW(w2, o0 + lr0, hidden, kq, in),             \
                     LDW(w2, o0 + lr1, hidden, kq, in))                                                               \
    for (int i = 0; i < 8; i++) {                                                                                     \
        int m = i < 4 ? ty * 4 + i : XF_M / 2 + ty * 4 + i - 4;                                                       \
        if (m >= n) continue;                                                                                         \
        __global float* yr = pairs + (long) grp[pairOff + r0 + m] * hidden;                                           \
        for (int j = 0; j < 8; j++) {                                                                                 \
            int o = o0 + (j < 4 ? tx * 4 + j : XF_N / 2 + tx * 4 + j - 4);                                            \
            if (o < hidden) yr[o] = acc[i][j];                                                                        \
        }                                                                                                             \
    }                                                                                                                 \
}

MOE_GATE_UP(f32, float, ldw4_f32)
MOE_GATE_UP(bf16, ushort, ldw4_bf16)
MOE_DOWN(f32, float, ldw4_f32)
MOE_DOWN(bf16, ushort, ldw4_bf16)

// The grouping on the device, from the router's ids (a prefill chunk's experts without the ids' trip to the host):
// the same table as the host writes (GroupedTiles) for a stacked set, expert e at slot e, written by one work-group:
// per-expert counts (local atomics), their prefix sums and the tile descriptors (maxTiles of them: the real ones in
// expert order, then tiles of 0 rows, which the product kernels skip), then each pair's place in its expert's rows
// (local atomics: the order within an expert is the arrival order, which changes no product, since each output row
// depends on its own input row only). tokOff = 3 * maxTiles, pairOff = tokOff + count.
// Launch: global = NT, local = NT.
#define XG_MAX_E 64
__kernel void moe_group_table(__global const int* ids, int count, int k, int experts, int maxTiles,
                              __global int* grp) {
    __local int cnt[XG_MAX_E], fill[XG_MAX_E];
    int tid = get_local_id(0);
    for (int e = tid; e < experts; e += XF_NT) cnt[e] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int p = tid; p < count; p += XF_NT) {
        int e = ids[p];
        if (e >= 0 && e < experts) atomic_inc(&cnt[e]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (tid == 0) {
        int start = 0, t = 0;
        for (int e = 0; e < experts; e++) {
            fill[e] = start;
            for (int r = 0; r < cnt[e] && t < maxTiles; r += XF_M, t++) {
                grp[3 * t] = e;
                grp[3 * t + 1] = start + r;
                grp[3 * t + 2] = min(XF_M, cnt[e] - r);
            }
            start += cnt[e];
        }
        for (; t < maxTiles; t++) { grp[3 * t] = 0; grp[3 * t + 1] = 0; grp[3 * t + 2] = 0; }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    int tokOff = 3 * maxTiles, pairOff = tokOff + count;
    for (int p = tid; p < count; p += XF_NT) {
        int e = ids[p];
        if (e < 0 || e >= experts) continue;
        int at = atomic_inc(&fill[e]);
        grp[tokOff + at] = p / k;
        grp[pairOff + at] = p;
    }
}
