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

#ifndef XT_NO_V2  // the probe's second build, where a compiler rejects v2: the first form without it
// ---- grouped experts, second form (v2): tensorcore.cl v2's scheme (cp.async stages, ldmatrix, XOR swizzle) -------
// The same two products and table, bf16 weights only, with both operands bf16 in global memory so that they go
// global -> local by cp.async without registers: x rounded to bf16 once per call (moe_x_bf16), act written as bf16
// by the gate-up epilogue (into the act buffer's first half). Tile: 128 x 128 by 8 warps (2 x 4) of 64 x 32, 32 of k
// a stage, 3 stages (48 KiB), as gemm_tc2w8_bf16. The helpers are copies of tensorcore.cl's v2 helpers under names of
// their own (a later refactor can share them); the gate-up B tile is interleaved by warp column as in the first form.
// Launch: as the first form (global = tiles * tilesN * 256, local = 256).
#define XV_K 32
#define XV_ST 3

inline int xv_sw(int r, int c) { return r * XV_K + ((c ^ ((r >> 1) & 3)) << 3); }

#ifndef TC_EMULATE
inline uint xv_base(__local const ushort* p) {
    uint r;
    asm volatile("{ .reg .pred s; .reg .u64 t; isspacep.shared s, %1; @s cvta.to.shared.u64 t, %1; @!s mov.b64 t, %1; "
                 "cvt.u32.u64 %0, t; }" : "=r"(r) : "l"((ulong) p));
    return r;
}
inline void xv_cp16(__local ushort* base, uint sbase, int off, __global const ushort* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(sbase + 2 * off), "l"((ulong) src), "r"(bytes));
}
inline void xv_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
#define XV_WAIT(N) asm volatile("cp.async.wait_group " #N ";" ::: "memory")
inline void xv_ldsm4(uint* r, __local const ushort* base, uint sbase, int off, __local uint* scratch) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(sbase + 2 * off));
}
#define XV_SCRATCH 1
#define XV_UNROLL _Pragma("unroll")
#else
inline uint xv_base(__local const ushort* p) { return 0; }
inline void xv_cp16(__local ushort* base, uint sbase, int off, __global const ushort* src, int bytes) {
    *((__local uint4*) (base + off)) = bytes ? *((__global const uint4*) src) : (uint4) 0u;
}
inline void xv_commit(void) {}
#define XV_WAIT(N)
inline void xv_ldsm4(uint* r, __local const ushort* base, uint sbase, int off, __local uint* scratch) {
    int tid = get_local_id(0), lane = tid % 32;
    __local uint* s = scratch + (tid / 32) * 32;
    s[lane] = (uint) off;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = 0; i < 4; i++) r[i] = *((__local const uint*) (base + s[i * 8 + lane / 4]) + lane % 4);
    barrier(CLK_LOCAL_MEM_FENCE);
}
#define XV_SCRATCH (256 * 6)
#define XV_UNROLL
#endif

// xb[i] = bf16(x[i]) for i < count (count % 8 == 0), eight a work-item. Launch: global = ceil(count / 8 / 256) * 256.
__kernel void moe_x_bf16(__global const float* x, __global ushort* xb, long count) {
    long i = get_global_id(0) * 8L;
    if (i >= count) return;
    __global const float* p = x + i;
    float4 a = vload4(0, p), b = vload4(1, p);
    *((__global uint4*) (xb + i)) = (uint4) (pack2(a.x, a.y), pack2(a.z, a.w), pack2(b.x, b.y), pack2(b.z, b.w));
}

// The k loop of v2 over one tile: the kernel sets xa[2], wa[2] (global addresses of this work-item's two A and two B
// rows at chunk lc, k = 0; rows lrow and lrow + 64) and xok[2], wok[2]; leaves acc[4][4][4].
#define XV_TILE                                                                                                       \
    __local uint4 smem[XV_ST * 256 * XV_K / 8];                                                                       \
    __local ushort* sm = (__local ushort*) smem;                                                                      \
    uint sb = xv_base(sm);                                                                                            \
    __local uint scratch[XV_SCRATCH];                                                                                 \
    const int STAGE = 256 * XV_K;                                                                                     \
    int tiles = (in + XV_K - 1) / XV_K;                                                                               \
    int soff = xv_sw(lrow, lc);                                                                                       \
    for (int s = 0; s < XV_ST - 1; s++) {                                                                             \
        if (s < tiles) XV_LOAD(s * STAGE, s)                                                                          \
        xv_commit();                                                                                                  \
    }                                                                                                                 \
    float acc[4][4][4];                                                                                               \
    XV_UNROLL for (int i = 0; i < 4; i++)                                                                             \
        XV_UNROLL for (int j = 0; j < 4; j++)                                                                         \
            XV_UNROLL for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;                                                \
    int ar = wm + (lane % 16), br = 128 + wn + (lane / 16) * 8 + (lane % 8);                                          \
    int aoff0 = xv_sw(ar, lane / 16), aoff1 = xv_sw(ar, 2 + lane / 16);                                               \
    int boff0 = xv_sw(br, (lane / 8) % 2), boff1 = xv_sw(br, 2 + (lane / 8) % 2);                                     \
    int rd = 0, wr = XV_ST - 1;                                                                                       \
    for (int kt = 0; kt < tiles; kt++) {                                                                              \
        XV_WAIT(1);                                                                                                   \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                                 \
        if (kt + XV_ST - 1 < tiles) XV_LOAD(wr * STAGE, kt + XV_ST - 1)                                               \
        xv_commit();                                                                                                  \
        int so = rd * STAGE;                                                                                          \
        rd = rd == XV_ST - 1 ? 0 : rd + 1;                                                                            \
        wr = wr == XV_ST - 1 ? 0 : wr + 1;                                                                            \
        XV_UNROLL for (int kc = 0; kc < 2; kc++) {                                                                    \
            uint fa[4][4], fb[2][4];                                                                                  \
            int ao = kc ? aoff1 : aoff0, bo = kc ? boff1 : boff0;                                                     \
            XV_UNROLL for (int i = 0; i < 4; i++) xv_ldsm4(fa[i], sm, sb, so + ao + i * 16 * XV_K, scratch);          \
            XV_UNROLL for (int j = 0; j < 2; j++) xv_ldsm4(fb[j], sm, sb, so + bo + j * 16 * XV_K, scratch);          \
            XV_UNROLL for (int i = 0; i < 4; i++)                                                                     \
                XV_UNROLL for (int j = 0; j < 4; j++)                                                                 \
                    mma_bf16(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j / 2][2 * (j % 2)],               \
                             fb[j / 2][2 * (j % 2) + 1], scratch);                                                    \
        }                                                                                                             \
    }                                                                                                                 \
    XV_WAIT(0);

// Copies k tile kt of the A rows (lrow, lrow + 64) and B rows (the same) into the stage at element so.
#define XV_LOAD(so, kt)                                                                                               \
    {                                                                                                                 \
        int k = (kt) * XV_K + lc * 8;                                                                                 \
        XV_UNROLL for (int i = 0; i < 2; i++) {                                                                       \
            bool ok = xok[i] && k < in;                                                                               \
            xv_cp16(sm, sb, (so) + soff + i * 64 * XV_K, ok ? xa[i] + (kt) * XV_K : xa0, ok ? 16 : 0);                \
        }                                                                                                             \
        XV_UNROLL for (int i = 0; i < 2; i++) {                                                                       \
            bool ok = wok[i] && k < in;                                                                               \
            xv_cp16(sm, sb, (so) + 128 * XV_K + soff + i * 64 * XV_K, ok ? wa[i] + (kt) * XV_K : wa0, ok ? 16 : 0);   \
        }                                                                                                             \
    }

// act (bf16) [i, o] = SiLU(g) * u: the gate-up product of v2. x bf16 [*, hidden].
__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void moe_grouped_up_tc2_bf16(__global const ushort* w1, __global const ushort* w3, __global const ushort* xb,
                             __global const int* grp, int tokOff, __global ushort* actb, int tilesN, int inter,
                             int hidden) {
    int tid = get_local_id(0), lane = tid % 32, warp = tid / 32, g = lane >> 2, t = lane & 3;
    int wm = (warp % 2) * 64, wn = (warp / 2) * 32;
    int gid = get_group_id(0), rt = gid / tilesN;
    int slot = grp[3 * rt], r0 = grp[3 * rt + 1], n = grp[3 * rt + 2], o0 = (gid % tilesN) * 64;
    if (n == 0) return;  // a padding tile (device grouping): the whole group leaves
    long wOff = (long) slot * inter * hidden;
    int in = hidden, lrow = tid / 4, lc = tid % 4;
    __global const ushort* xa[2];
    __global const ushort* wa[2];
    bool xok[2], wok[2];
    __global const ushort* xa0 = xb;
    __global const ushort* wa0 = w1;
    XV_UNROLL for (int i = 0; i < 2; i++) {
        int r = lrow + 64 * i;  // A row: the tile's row r, its token row through the table
        xok[i] = r < n;
        xa[i] = xb + (long) (xok[i] ? grp[tokOff + r0 + r] : 0) * hidden + lc * 8;
        int wr = o0 + (r / 32) * 16 + r % 16;  // B row r: W1 or W3 (interleaved by warp column) row wr
        wok[i] = wr < inter;
        wa[i] = ((r % 32) < 16 ? w1 : w3) + wOff + (long) (wok[i] ? wr : 0) * hidden + lc * 8;
    }
    XV_TILE
    XV_UNROLL for (int i = 0; i < 4; i++) {
        XV_UNROLL for (int h = 0; h < 2; h++) {
            int m = wm + i * 16 + g + 8 * h;
            if (m >= n) continue;
            __global ushort* ar = actb + (long) (r0 + m) * inter;
            XV_UNROLL for (int j = 0; j < 2; j++) {
                int o = o0 + (warp / 2) * 16 + j * 8 + 2 * t;
                float g0 = acc[i][j][2 * h], g1 = acc[i][j][2 * h + 1];
                float v0 = g0 / (1.0f + exp(-g0)) * acc[i][j + 2][2 * h];
                float v1 = g1 / (1.0f + exp(-g1)) * acc[i][j + 2][2 * h + 1];
                if (o + 1 < inter) *((__global uint*) (ar + o)) = pack2(v0, v1);
                else if (o < inter) ar[o] = (ushort) bf16_bits(v0);
            }
        }
    }
}

// pairs[pairIndex[i], o] = act[i] . W2_e[o]: the down product of v2, act bf16 [rows, inter].
__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void moe_grouped_down_tc2_bf16(__global const ushort* w2, __global const ushort* actb, __global const int* grp,
                               int pairOff, __global float* pairs, int tilesN, int inter, int hidden) {
    int tid = get_local_id(0), lane = tid % 32, warp = tid / 32, g = lane >> 2, t = lane & 3;
    int wm = (warp % 2) * 64, wn = (warp / 2) * 32;
    int gid = get_group_id(0), rt = gid / tilesN;
    int slot = grp[3 * rt], r0 = grp[3 * rt + 1], n = grp[3 * rt + 2], o0 = (gid % tilesN) * 128;
    if (n == 0) return;
    long wOff = (long) slot * inter * hidden;
    int in = inter, lrow = tid / 4, lc = tid % 4;
    __global const ushort* xa[2];
    __global const ushort* wa[2];
    bool xok[2], wok[2];
    __global const ushort* xa0 = actb;
    __global const ushort* wa0 = w2;
    XV_UNROLL for (int i = 0; i < 2; i++) {
        int r = lrow + 64 * i;
        xok[i] = r < n;
        xa[i] = actb + (long) (r0 + (xok[i] ? r : 0)) * inter + lc * 8;
        wok[i] = o0 + r < hidden;
        wa[i] = w2 + wOff + (long) (wok[i] ? o0 + r : 0) * inter + lc * 8;
    }
    XV_TILE
    XV_UNROLL for (int i = 0; i < 4; i++) {
        XV_UNROLL for (int h = 0; h < 2; h++) {
            int m = wm + i * 16 + g + 8 * h;
            if (m >= n) continue;
            __global float* yr = pairs + (long) grp[pairOff + r0 + m] * hidden;
            XV_UNROLL for (int j = 0; j < 4; j++) {
                int o = o0 + wn + j * 8 + 2 * t;
                if (o + 1 < hidden) *((__global float2*) (yr + o)) = (float2) (acc[i][j][2 * h], acc[i][j][2 * h + 1]);
                else if (o < hidden) yr[o] = acc[i][j][2 * h];
            }
        }
    }
}
#endif  // XT_NO_V2
