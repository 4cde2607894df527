// ---- grouped experts on tensor cores (experts_tc.cl, built after tensorcore.cl in the same program: it uses its
// mma_bf16, TC_SCRATCH and ld8_*; tile sizes are its own, so that other kernels' tiles may change) ----------------
// The same two launches as experts.cl (its comment has the table: per row tile of at most 128 rows the expert's slot,
// the first row in the grouped order and the row count; then tokenRow at tokOff and pairIndex at pairOff), the
// products as gemm_tc_*'s: 8 warps, a 128 x 128 tile of the product, 32 of k a step, bf16 fragments from local
// memory, fp32 accumulators. Work-group g takes row tile g / tilesN and column tile g % tilesN.
//
// moe_grouped_up_tc_*: act[i, o] = SiLU(g) * u with g = x[tokenRow[i]] . W1_e[o], u = x[tokenRow[i]] . W3_e[o], for a
// column tile of 64 outputs. The B tile's 128 rows are interleaved by warp column: row r (block b = r / 32,
// j = r % 32) is W1 row o0 + b * 16 + j for j < 16 and W3 row o0 + b * 16 + j - 16 otherwise, so that a warp's mma
// column tiles 0, 1 hold g and its tiles 2, 3 the u of the same outputs, in the same lanes: the epilogue multiplies
// in registers. A rows are read through tokenRow. Launch: global = tiles * ceil(I / 64) * NT, local = NT.
// moe_grouped_down_tc_*: pairs[pairIndex[i], o] = act[i] . W2_e[o], act's tile rows contiguous, each output row
// written into its pair's row. Launch: global = tiles * ceil(h / 128) * NT, local = NT.

#define XT_NT 256          // work-items of a group (ResidentOps.NT)
#define XT_M 128           // rows of a tile (GroupedTiles.TILE_ROWS)
#define XT_N 128           // columns of the B tile (the down kernel's outputs; the gate-up kernel's 64 of W1 and W3)
#define XT_K 32
#define XT_LD (XT_K + 8)   // bf16 row stride of the local tiles (80 bytes: conflict-free fragment loads)

inline void xt_st8(__local ushort* a, int row, int chunk, uint4 v) {
    *((__local uint4*) (a + row * XT_LD + chunk * 8)) = v;
}

// Eight fp32 elements x[row][k..k+7] as bf16 pairs, zeros for row < 0 (past the tile) or k past in.
inline uint4 ld8_row(__global const float* x, int row, int k, int in) {
    return row < 0 ? (uint4) 0u : ld8_f32(x, row, row + 1, k, in);
}

// The tile loop of gemm_tc_*: A0, A1 (x rows lr0, lr1) and B0, B1 (B rows lr0, lr1) are expressions of k.
#define MOE_TC_TILE(A0, A1, B0, B1)                                                                                   \
    __local uint4 axv[2 * XT_M * XT_LD / 8];                                                                          \
    __local uint4 awv[2 * XT_N * XT_LD / 8];                                                                          \
    __local ushort* axb = (__local ushort*) axv;                                                                      \
    __local ushort* awb = (__local ushort*) awv;                                                                      \
    __local uint scratch[TC_SCRATCH];                                                                                 \
    int k = lc * 8;                                                                                                   \
    uint4 px0 = A0, px1 = A1, pw0 = B0, pw1 = B1;                                                                     \
    xt_st8(axb, lr0, lc, px0); xt_st8(axb, lr1, lc, px1);                                                             \
    xt_st8(awb, lr0, lc, pw0); xt_st8(awb, lr1, lc, pw1);                                                             \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                     \
    float acc[4][4][4];                                                                                               \
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;          \
    int tiles = (in + XT_K - 1) / XT_K;                                                                               \
    for (int kt = 0; kt < tiles; kt++) {                                                                              \
        int cur = kt & 1;                                                                                             \
        if (kt + 1 < tiles) {                                                                                         \
            k = (kt + 1) * XT_K + lc * 8;                                                                             \
            px0 = A0; px1 = A1; pw0 = B0; pw1 = B1;                                                                   \
        }                                                                                                             \
        __local const ushort* a = axb + cur * XT_M * XT_LD;                                                           \
        __local const ushort* b = awb + cur * XT_N * XT_LD;                                                           \
        for (int ks = 0; ks < XT_K; ks += 16) {                                                                       \
            uint fa[4][4], fb[4][2];                                                                                  \
            for (int i = 0; i < 4; i++) {                                                                             \
                __local const ushort* r = a + (wm + i * 16 + g) * XT_LD + ks + 2 * t;                                 \
                fa[i][0] = *((__local const uint*) r);                                                                \
                fa[i][1] = *((__local const uint*) (r + 8 * XT_LD));                                                  \
                fa[i][2] = *((__local const uint*) (r + 8));                                                          \
                fa[i][3] = *((__local const uint*) (r + 8 * XT_LD + 8));                                              \
            }                                                                                                         \
            for (int j = 0; j < 4; j++) {                                                                             \
                __local const ushort* r = b + (wn + j * 8 + g) * XT_LD + ks + 2 * t;                                  \
                fb[j][0] = *((__local const uint*) r);                                                                \
                fb[j][1] = *((__local const uint*) (r + 8));                                                          \
            }                                                                                                         \
            for (int i = 0; i < 4; i++)                                                                               \
                for (int j = 0; j < 4; j++)                                                                           \
                    mma_bf16(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j][0], fb[j][1], scratch);         \
        }                                                                                                             \
        if (kt + 1 < tiles) {                                                                                         \
            __local ushort* na = axb + (cur ^ 1) * XT_M * XT_LD;                                                      \
            __local ushort* nb = awb + (cur ^ 1) * XT_N * XT_LD;                                                      \
            xt_st8(na, lr0, lc, px0); xt_st8(na, lr1, lc, px1);                                                       \
            xt_st8(nb, lr0, lc, pw0); xt_st8(nb, lr1, lc, pw1);                                                       \
        }                                                                                                             \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                                 \
    }

// The table entry of this work-group and the lanes' places, as in gemm_tc_*.
#define MOE_TC_START(COLS)                                                                                            \
    int tid = get_local_id(0), lane = tid % 32, warp = tid / 32;                                                      \
    int g = lane >> 2, t = lane & 3;                                                                                  \
    int wm = (warp % 2) * 64, wn = (warp / 2) * 32;                                                                   \
    int gid = get_group_id(0), rt = gid / tilesN;                                                                     \
    int slot = grp[3 * rt], r0 = grp[3 * rt + 1], n = grp[3 * rt + 2], o0 = (gid % tilesN) * (COLS);                  \
    if (n == 0) return;  /* a tile of no rows (device grouping pads the table): the whole group leaves */             \
    int lr0 = tid / 4, lr1 = lr0 + XT_NT / 4, lc = tid % 4;

#define MOE_GROUPED_UP_TC(SUF, WT, LDW)                                                                               \
__kernel __attribute__((reqd_work_group_size(XT_NT, 1, 1)))                                                           \
void moe_grouped_up_tc_##SUF(__global const WT* w1, __global const WT* w3, __global const float* x,                   \
                             __global const int* grp, int tokOff, __global float* act, int tilesN, int inter,         \
                             int hidden) {                                                                            \
    MOE_TC_START(XT_N / 2)                                                                                            \
    long wOff = (long) slot * inter * hidden;                                                                         \
    w1 += wOff;                                                                                                       \
    w3 += wOff;                                                                                                       \
    int in = hidden;                                                                                                  \
    int xr0 = lr0 < n ? grp[tokOff + r0 + lr0] : -1, xr1 = lr1 < n ? grp[tokOff + r0 + lr1] : -1;                     \
    /* B rows lr0, lr1: the matrix and its row (interleaved by warp column, see above) */                             \
    int wr0 = o0 + (lr0 / 32) * 16 + lr0 % 16, wr1 = o0 + (lr1 / 32) * 16 + lr1 % 16;                                 \
    __global const WT* wb0 = (lr0 % 32) < 16 ? w1 : w3;                                                               \
    __global const WT* wb1 = (lr1 % 32) < 16 ? w1 : w3;                                                               \
    MOE_TC_TILE(ld8_row(x, xr0, k, in), ld8_row(x, xr1, k, in), LDW(wb0, wr0, inter, k, in),                          \
                LDW(wb1, wr1, inter, k, in))                                                                          \
    for (int i = 0; i < 4; i++) {                                                                                     \
        for (int h = 0; h < 2; h++) {                                                                                 \
            int m = wm + i * 16 + g + 8 * h;                                                                          \
            if (m >= n) continue;                                                                                     \
            __global float* ar = act + (long) (r0 + m) * inter;                                                       \
            for (int j = 0; j < 2; j++) {                                                                             \
                int o = o0 + (warp / 2) * 16 + j * 8 + 2 * t;                                                         \
                float g0 = acc[i][j][2 * h], g1 = acc[i][j][2 * h + 1];                                               \
                if (o < inter) ar[o] = g0 / (1.0f + exp(-g0)) * acc[i][j + 2][2 * h];                                 \
                if (o + 1 < inter) ar[o + 1] = g1 / (1.0f + exp(-g1)) * acc[i][j + 2][2 * h + 1];                     \
            }                                                                                                         \
        }                                                                                                             \
    }                                                                                                                 \
}

#define MOE_GROUPED_DOWN_TC(SUF, WT, LDW)                                                                             \
__kernel __attribute__((reqd_work_group_size(XT_NT, 1, 1)))                                                           \
void moe_grouped_down_tc_##SUF(__global const WT* w2, __global const float* act, __global const int* grp,             \
                               int pairOff, __global float* pairs, int tilesN, int inter, int hidden) {               \
    MOE_TC_START(XT_N)                                                                                                \
    w2 += (long) slot * inter * hidden;                                                                               \
    __global const float* x = act + (long) r0 * inter;                                                                \
    int in = inter;                                                                                                   \
    MOE_TC_TILE(ld8_f32(x, lr0, n, k, in), ld8_f32(x, lr1, n, k, in), LDW(w2, o0 + lr0, hidden, k, in),               \
                LDW(w2, o0 + lr1, hidden, k, in))                                                                     \
    for (int i = 0; i < 4; i++) {                                                                                     \
        for (int h = 0; h < 2; h++) {                                                                                 \
            int m = wm + i * 16 + g + 8 * h;                                                                          \
            if (m >= n) continue;                                                                                     \
            __global float* yr = pairs + (long) grp[pairOff + r0 + m] * hidden;                                       \
            for (int j = 0; j < 4; j++) {                                                                             \
                int o = o0 + wn + j * 8 + 2 * t;                                                                      \
                if (o < hidden) yr[o] = acc[i][j][2 * h];                                                             \
                if (o + 1 < hidden) yr[o + 1] = acc[i][j][2 * h + 1];                                                 \
            }                                                                                                         \
        }                                                                                                             \
    }                                                                                                                 \
}

MOE_GROUPED_UP_TC(f32, float, ld8_f32)
MOE_GROUPED_UP_TC(bf16, ushort, ld8_bf16)
MOE_GROUPED_DOWN_TC(f32, float, ld8_f32)
MOE_GROUPED_DOWN_TC(bf16, ushort, ld8_bf16)
