// Decode products on tensor cores (-Dlightmesh.decode.tc=split|bf16; DecodeTc): the matrix-vector products of the
// fused decode step (projections, output projection and LM head, the experts' gate + up and down) for 1..16 rows of
// x, as mma.sync m16n8k16 (bf16 in, fp32 accumulate) with 16 weight rows as A and the batch as B (N = 8, two N tiles
// for 9..16 rows): each weight element is read once and multiplies every row of x in one instruction, where the v2
// kernels' CUDA-core loop re-reads x for each weight row and does one FMA per (weight, row).
// Built as its own program after resident.cl (whose helpers it uses: arrive, pairs_of, pick, PROJ_ROW,
// PROJ_ROPE_TAIL, ...), only where DecodeTc's probe asks for it; each kernel is checked against its v2 twin at start.
//
// Two forms of the activations (x is fp32 on the device; the weights are bf16 and used as stored):
//   bf16:  x rounded to bf16 (nearest even): about 2^-9 relative error a product term;
//   split: x = hi + lo, hi = bf16(x), lo = bf16(x - hi), two mma a fragment: x kept to ~16 bits (about 1e-5 relative
//          a dot product on random data), so the fp32 setting can run on tensor cores too.
//
// Work: a work-group of NT = 256 (8 warps) computes 16 weight rows (o0 .. o0 + 15) for all rows of x; warp w takes the
// k slabs of 32 numbered w, w + 8, w + 16, ... (DTC_U slabs loaded before their mma, so 2 * DTC_U 16-byte weight loads
// of a lane are in flight), and the warps' 16 x 8 (x 2) tiles are added through local memory at the end.
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16"), g = lane / 4, t = lane % 4. Since a dot product does not
// depend on the order of k, the 16 k of an mma are taken in a permuted order that lets each lane load whole 16-byte
// chunks: lane (g, t) loads W[o0 + g][kb + 8t .. 8t + 7] and W[o0 + g + 8][same] as uint4 (words w.x .. w.w, two bf16
// each, the lower k in the low half) and x[col g][kb + 8t .. 8t + 7] as two float4, packed to four bf16 pairs p.x ..
// p.w. mma 1 of the slab takes a0 = Wg.x, a1 = Wg8.x, a2 = Wg.y, a3 = Wg8.y, b0 = p.x, b1 = p.y (logical k 2t, 2t + 1
// are physical kb + 8t, + 1 and logical 2t + 8, + 9 are kb + 8t + 2, + 3, the same for A and B); mma 2 the .z / .w
// words (kb + 8t + 4 .. + 7). C: c0, c1 = rows o0 + g, columns 2t, 2t + 1; c2, c3 = row o0 + g + 8.
// Limits: in % 8 == 0 (every chunk whole), weight rows and x rows 16-byte aligned (as the v2 bf16v kernels).

#define DTC_WARPS (NT / 32)
#define DTC_ROWS 16
#define DTC_U 4
// every kernel runs in groups of NT: the compiler may give a work-item up to 255 registers
#define DTC_WG __attribute__((reqd_work_group_size(NT, 1, 1)))

// fp32 -> bf16 bits, round to nearest even (NaN kept a NaN), as tensorcore.cl's bf16_bits
inline uint dtc_bits(float f) {
    uint u = as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

inline uint dtc_pack(float lo, float hi) { return dtc_bits(lo) | (dtc_bits(hi) << 16); }

// the fp32 value of bf16 bits
inline float dtc_f(uint b) { return as_float(b << 16); }

// x's 8 elements as 4 bf16 pairs (hi), and what rounding left (lo = bf16(x - hi))
inline uint4 dtc_hi(float4 a, float4 b) {
    return (uint4) (dtc_pack(a.x, a.y), dtc_pack(a.z, a.w), dtc_pack(b.x, b.y), dtc_pack(b.z, b.w));
}

inline uint dtc_lo2(float p, float q) {
    return dtc_pack(p - dtc_f(dtc_bits(p)), q - dtc_f(dtc_bits(q)));
}

inline uint4 dtc_lo(float4 a, float4 b) {
    return (uint4) (dtc_lo2(a.x, a.y), dtc_lo2(a.z, a.w), dtc_lo2(b.x, b.y), dtc_lo2(b.z, b.w));
}

#if defined(LM_NVIDIA) && !defined(DTC_EMULATE)
inline void dtc_mma(float* c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1, __local uint* scratch) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#define DTC_SCRATCH 1
#else
// Elsewhere (PoCL in the tests): the same warp-wide product in plain OpenCL C, the fragments exchanged through local
// memory exactly as the mma distributes them, so that the tiling, the fragment loads, the permuted k and the
// epilogues are checked on devices without tensor cores. Every work-item of the group calls it (it has barriers).
inline void dtc_mma(float* c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1, __local uint* scratch) {
    int tid = get_local_id(0), lane = tid % 32;
    __local uint* s = scratch + (tid / 32) * 32 * 6;
    s[lane * 6 + 0] = a0; s[lane * 6 + 1] = a1; s[lane * 6 + 2] = a2; s[lane * 6 + 3] = a3;
    s[lane * 6 + 4] = b0; s[lane * 6 + 5] = b1;
    barrier(CLK_LOCAL_MEM_FENCE);
    int g = lane >> 2, t = lane & 3;
    for (int r = 0; r < 4; r++) {
        int row = g + (r >= 2 ? 8 : 0), col = 2 * t + (r & 1);
        float sum = 0.0f;
        for (int k = 0; k < 16; k++) {
            // A[row][k]: lane (row % 8) * 4 + (k % 8) / 2, register (row >= 8) + 2 (k >= 8), half k % 2
            uint ap = s[((row % 8) * 4 + (k % 8) / 2) * 6 + (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)];
            // B[k][col]: lane col * 4 + (k % 8) / 2, register b0 (k < 8) or b1, half k % 2
            uint bp = s[(col * 4 + (k % 8) / 2) * 6 + 4 + (k >= 8 ? 1 : 0)];
            sum += as_float((k & 1) ? (ap & 0xffff0000u) : (ap << 16)) * as_float((k & 1) ? (bp & 0xffff0000u) : (bp << 16));
        }
        c[r] += sum;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
#define DTC_SCRATCH (NT * 6)
#endif

// One slab's two mma of weight rows (wg: row g's chunk, wg8: row g + 8's) with x fragment p into c[0..3].
inline void dtc_slab(float* c, uint4 wg, uint4 wg8, uint4 p, __local uint* scratch) {
    dtc_mma(c, wg.x, wg8.x, wg.y, wg8.y, p.x, p.y, scratch);
    dtc_mma(c, wg.z, wg8.z, wg.w, wg8.w, p.z, p.w, scratch);
}

// Slab u of the pass: the weight chunks of rows g and g + 8 (A, and B where two) and the x chunks of columns g and
// g + 8 (the second only where nj > 1). Zeros past in, past the rows, past the columns.
#define DTC_LOAD(u)                                                                                                  \
    int k##u = kb + (u) * DTC_WARPS * 32, ok##u = k##u < in;                                                         \
    uint4 a0_##u = ok##u && va0 ? *((__global const uint4*) (wa0 + k##u)) : (uint4) 0u;                              \
    uint4 a1_##u = ok##u && va1 ? *((__global const uint4*) (wa1 + k##u)) : (uint4) 0u;                              \
    uint4 b0_##u = two && ok##u && va0 ? *((__global const uint4*) (wb0 + k##u)) : (uint4) 0u;                       \
    uint4 b1_##u = two && ok##u && va1 ? *((__global const uint4*) (wb1 + k##u)) : (uint4) 0u;                       \
    float4 xl0_##u = ok##u && xv0 ? *((__global const float4*) (x0 + k##u)) : (float4) 0.0f;                        \
    float4 xh0_##u = ok##u && xv0 ? *((__global const float4*) (x0 + k##u + 4)) : (float4) 0.0f;                    \
    float4 xl1_##u = ok##u && xv1 && nj > 1 ? *((__global const float4*) (x1 + k##u)) : (float4) 0.0f;              \
    float4 xh1_##u = ok##u && xv1 && nj > 1 ? *((__global const float4*) (x1 + k##u + 4)) : (float4) 0.0f;

// The mma of one N tile (column block j: x chunk lo4 / hi4 into acc + 4j) of slab u; split adds the lo parts.
#define DTC_TILE(u, j, lo4, hi4)                                                                                     \
    {                                                                                                                \
        uint4 p = dtc_hi(lo4, hi4);                                                                                  \
        dtc_slab(accA + 4 * (j), a0_##u, a1_##u, p, scratch);                                                        \
        if (two) dtc_slab(accB + 4 * (j), b0_##u, b1_##u, p, scratch);                                               \
        if (split) {                                                                                                 \
            uint4 q = dtc_lo(lo4, hi4);                                                                              \
            dtc_slab(accA + 4 * (j), a0_##u, a1_##u, q, scratch);                                                    \
            if (two) dtc_slab(accB + 4 * (j), b0_##u, b1_##u, q, scratch);                                           \
        }                                                                                                            \
    }
#define DTC_MATH(u)                                                                                                  \
    DTC_TILE(u, 0, xl0_##u, xh0_##u)                                                                                 \
    if (nj > 1) DTC_TILE(u, 1, xl1_##u, xh1_##u)

// This warp's part of the 16-row tile: accA[4j .. 4j + 3] += (A rows g, g + 8) . (x column g + 8j) over the warp's
// slabs, and the same for the second weight B (two != 0: the experts' up beside the gate) into accB. wa0 / wa1 (wb0 /
// wb1) point at k = 0 of weight rows g and g + 8 (va0 / va1: whether those rows exist); x0 / x1 at k = 0 of the x
// rows of columns g and g + 8 (xv0 / xv1: whether they exist). nj: N tiles (1 or 2), split: the hi + lo form. Every
// work-item of the group calls it with the same two, nj, split and in (the emulated mma has barriers).
inline void dtc_product(__global const ushort* wa0, __global const ushort* wa1, int va0, int va1,
                        __global const ushort* wb0, __global const ushort* wb1, int two,
                        __global const float* x0, __global const float* x1, int xv0, int xv1, int nj, int split,
                        int in, float* accA, float* accB, __local uint* scratch) {
    int tid = get_local_id(0), warp = tid / 32, t = tid & 3;
    int slabs = (in + 31) / 32;
    int iters = (slabs + DTC_WARPS * DTC_U - 1) / (DTC_WARPS * DTC_U);
    for (int it = 0; it < iters; it++) {
        // DTC_U = 4 slabs, written out (DTC_LOAD / DTC_MATH) so that every fragment is a register whatever the
        // compiler unrolls: the loads of all four first, then their mma
        int kb = (it * DTC_U * DTC_WARPS + warp) * 32 + 8 * t;
        DTC_LOAD(0) DTC_LOAD(1) DTC_LOAD(2) DTC_LOAD(3)
        DTC_MATH(0) DTC_MATH(1) DTC_MATH(2) DTC_MATH(3)
    }
}

// The warps' tiles added: this work-item's accumulators into red (weight wi of the launch, [wi][warp][j][16 rows][8
// columns]); after the barrier, element idx (< nj * 128: j = idx / 128, row idx % 128 / 8, column idx % 8) of the
// sum is dtc_sum(red, wi, idx). Every work-item calls dtc_share (barrier).
inline void dtc_share(__local float* red, int wi, const float* acc) {
    int tid = get_local_id(0), lane = tid % 32, warp = tid / 32, g = lane >> 2, t = lane & 3;
    for (int j = 0; j < 2; j++)
        for (int h = 0; h < 2; h++)
            for (int q = 0; q < 2; q++)
                red[((wi * DTC_WARPS + warp) * 2 + j) * 128 + (g + 8 * h) * 8 + 2 * t + q] = acc[4 * j + 2 * h + q];
}

inline float dtc_sum(__local const float* red, int wi, int idx) {
    int j = idx / 128, e = idx % 128;
    float s = 0.0f;
    for (int w = 0; w < DTC_WARPS; w++) s += red[((wi * DTC_WARPS + w) * 2 + j) * 128 + e];
    return s;
}

// y[t, row] = W[row] . x[t] for t < n, as matvec2: dtc_matvec_* n <= 8 (one N tile), dtc_matvec16_* n <= 16 (two;
// the registers of the second tile's x chunks cost the first form occupancy). Launch: global = ceil(out / 16) * NT,
// local = NT.
#define DTC_MATVEC(FORM, SPLIT, NAME, NJ)                                                                            \
__kernel DTC_WG void NAME##_##FORM(__global const ushort* restrict w, long wOff, __global const float* restrict x,      \
                                long xOff, __global float* restrict y, long yOff, int n, int in, int out) {        \
    __local uint scratch[DTC_SCRATCH];                                                                             \
    __local float red[DTC_WARPS * 2 * 128];                                                                        \
    int tid = get_local_id(0), lane = tid % 32, g = lane >> 2;                                                     \
    int o0 = get_group_id(0) * DTC_ROWS, nj = NJ > 1 && n > 8 ? 2 : 1;                                            \
    __global const ushort* wr = w + wOff + (long) o0 * in;                                                         \
    int va0 = o0 + g < out, va1 = o0 + g + 8 < out;                                                                \
    __global const ushort* w0 = va0 ? wr + (long) g * in : w;                                                      \
    __global const ushort* w1 = va1 ? wr + (long) (g + 8) * in : w;                                                \
    __global const float* xb = x + xOff;                                                                           \
    int xv0 = g < n, xv1 = g + 8 < n;                                                                              \
    float acc[8], unused[8];                                                                                       \
    for (int i = 0; i < 8; i++) { acc[i] = 0.0f; unused[i] = 0.0f; }                                               \
    dtc_product(w0, w1, va0, va1, w0, w1, 0, xv0 ? xb + (long) g * in : xb, xv1 ? xb + (long) (g + 8) * in : xb,    \
                xv0, xv1, nj, SPLIT, in, acc, unused, scratch);                                                    \
    dtc_share(red, 0, acc);                                                                                        \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    for (int idx = tid; idx < nj * 128; idx += NT) {                                                               \
        int row = o0 + idx % 128 / 8, col = (idx / 128) * 8 + idx % 8;                                            \
        if (row < out && col < n) y[yOff + (long) col * out + row] = dtc_sum(red, 0, idx);                         \
    }                                                                                                              \
}

// Projections of one input, as dec_proj2 / dec_projr2 (same arguments; rows counted over wa, wb, wc in turn; SiLU on
// ya where siluA; ROPE: the last group rotates q and k and appends k and v to the caches). n <= MAXN = 8 (one N tile,
// as the fused step's rows).
// Launch: global = ceil((outA + outB + outC) / 16) * NT, local = NT.
#define DTC_PROJ(FORM, SPLIT, KNAME, ROPE)                                                                           \
__kernel DTC_WG void KNAME##_##FORM(__global const ushort* restrict wa, __global const ushort* restrict wb,                \
                             __global const ushort* restrict wc, __global const float* restrict x,                 \
                             __global float* ya, __global float* yb, __global float* yc, int n, int in, int outA,  \
                             int outB, int outC, int siluA, __global const int* info,                              \
                             __global const float* invFreq, int heads, int kvHeads, int dim, int hr,               \
                             __global int* counter, CACHE_ARGS(kc), CACHE_ARGS(vc)) {                              \
    __local uint scratch[DTC_SCRATCH];                                                                             \
    __local float red[DTC_WARPS * 2 * 128];                                                                        \
    __local int flag;                                                                                              \
    int tid = get_local_id(0), lane = tid % 32, g = lane >> 2;                                                     \
    int total = outA + outB + outC, o0 = get_group_id(0) * DTC_ROWS, nj = 1;                                       \
    int va0 = o0 + g < total, va1 = o0 + g + 8 < total;                                                            \
    __global const ushort* w0 = va0 ? PROJ_ROW(o0 + g) : wa;                                                       \
    __global const ushort* w1 = va1 ? PROJ_ROW(o0 + g + 8) : wa;                                                   \
    int xv0 = g < n, xv1 = g + 8 < n;                                                                              \
    float acc[8], unused[8];                                                                                       \
    for (int i = 0; i < 8; i++) { acc[i] = 0.0f; unused[i] = 0.0f; }                                               \
    dtc_product(w0, w1, va0, va1, w0, w1, 0, xv0 ? x + (long) g * in : x, xv1 ? x + (long) (g + 8) * in : x,       \
                xv0, xv1, nj, SPLIT, in, acc, unused, scratch);                                                    \
    dtc_share(red, 0, acc);                                                                                        \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    for (int idx = tid; idx < nj * 128; idx += NT) {                                                               \
        int row = o0 + idx % 128 / 8, col = (idx / 128) * 8 + idx % 8;                                             \
        if (row < total && col < n) {                                                                              \
            float v = dtc_sum(red, 0, idx);                                                                        \
            if (row < outA) ya[(long) col * outA + row] = siluA ? v / (1.0f + exp(-v)) : v;                        \
            else if (row < outA + outB) yb[(long) col * outB + row - outA] = v;                                    \
            else yc[(long) col * outC + row - outA - outB] = v;                                                    \
        }                                                                                                          \
    }                                                                                                              \
    if (!ROPE) return;                                                                                             \
    int last = arrive(counter, get_num_groups(0), &flag);                                                          \
    TAIL(last)                                                                                                     \
    PROJ_ROPE_TAIL(last)                                                                                           \
}

// Gate and up of the experts for the pairs of rows [r0, r0 + rows), as moe_gate_up2 (same arguments): group (e, row
// block) computes act[p, row] = SiLU(W1_e[row] . x_t) * (W3_e[row] . x_t) for expert e's pairs p (at most MAXN = 8:
// one N tile), x column j = the row of its j-th pair. Groups of experts no pair chose return at once.
// Launch: global = E * ceil(inter / 16) * NT, local = NT.
#define DTC_GATE_UP(FORM, SPLIT)                                                                                     \
__kernel DTC_WG void dtc_gate_up_##FORM(__global const ushort* restrict w1, __global const ushort* restrict w3,            \
                                 __global const float* restrict x, __global const int* ids,                        \
                                 __global float* restrict act, int r0, int rows, int k, int inter, int hidden) {   \
    __local uint scratch[DTC_SCRATCH];                                                                             \
    __local float red[2 * DTC_WARPS * 2 * 128];                                                                    \
    int blocks = (inter + DTC_ROWS - 1) / DTC_ROWS;                                                                \
    int e = get_group_id(0) / blocks, o0 = (get_group_id(0) % blocks) * DTC_ROWS;                                  \
    int tid = get_local_id(0), lane = tid % 32, g = lane >> 2;                                                     \
    int pr[MAXN], xr[MAXN];                                                                                        \
    int np = pairs_of(ids, r0, rows, k, e, pr, xr, 1);                                                             \
    if (np == 0) return;                                                                                           \
    int va0 = o0 + g < inter, va1 = o0 + g + 8 < inter;                                                            \
    long base = (long) e * inter * hidden;                                                                         \
    long ra = base + (long) (va0 ? o0 + g : 0) * hidden, rb = base + (long) (va1 ? o0 + g + 8 : 0) * hidden;        \
    int xv0 = g < np;                                                                                              \
    __global const float* xg = x + (long) (xv0 ? pick(xr, g) : 0) * hidden;                                        \
    float gate[8], up[8];                                                                                          \
    for (int i = 0; i < 8; i++) { gate[i] = 0.0f; up[i] = 0.0f; }                                                 \
    dtc_product(w1 + ra, w1 + rb, va0, va1, w3 + ra, w3 + rb, 1, xg, xg, xv0, 0, 1, SPLIT, hidden, gate, up,        \
                scratch);                                                                                          \
    dtc_share(red, 0, gate);                                                                                       \
    dtc_share(red, 1, up);                                                                                         \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    if (tid < 128) {                                                                                               \
        int row = o0 + tid / 8, col = tid % 8;                                                                     \
        if (row < inter && col < np) {                                                                             \
            float gs = dtc_sum(red, 0, tid), us = dtc_sum(red, 1, tid);                                            \
            act[(long) pick(pr, col) * inter + row] = gs / (1.0f + exp(-gs)) * us;                                 \
        }                                                                                                          \
    }                                                                                                              \
}

// Down projection of the experts, as moe_down2 (same arguments): out[p, row] = W2_e[row] . act[p] for expert e's pairs
// p. Launch: global = E * ceil(hidden / 16) * NT, local = NT.
#define DTC_DOWN(FORM, SPLIT)                                                                                        \
__kernel DTC_WG void dtc_down_##FORM(__global const ushort* restrict w2, __global const float* restrict act,               \
                              __global const int* ids, __global float* restrict out, int r0, int rows, int k,      \
                              int inter, int hidden) {                                                             \
    __local uint scratch[DTC_SCRATCH];                                                                             \
    __local float red[DTC_WARPS * 2 * 128];                                                                        \
    int blocks = (hidden + DTC_ROWS - 1) / DTC_ROWS;                                                               \
    int e = get_group_id(0) / blocks, o0 = (get_group_id(0) % blocks) * DTC_ROWS;                                  \
    int tid = get_local_id(0), lane = tid % 32, g = lane >> 2;                                                     \
    int pr[MAXN], xr[MAXN];                                                                                        \
    int np = pairs_of(ids, r0, rows, k, e, pr, xr, 0);                                                             \
    if (np == 0) return;                                                                                           \
    int va0 = o0 + g < hidden, va1 = o0 + g + 8 < hidden;                                                          \
    long base = (long) e * hidden * inter;                                                                         \
    __global const ushort* w0 = w2 + base + (long) (va0 ? o0 + g : 0) * inter;                                     \
    __global const ushort* w1 = w2 + base + (long) (va1 ? o0 + g + 8 : 0) * inter;                                 \
    int xv0 = g < np;                                                                                              \
    __global const float* xg = act + (long) (xv0 ? pick(xr, g) : 0) * inter;                                       \
    float acc[8], unused[8];                                                                                       \
    for (int i = 0; i < 8; i++) { acc[i] = 0.0f; unused[i] = 0.0f; }                                               \
    dtc_product(w0, w1, va0, va1, w0, w1, 0, xg, xg, xv0, 0, 1, SPLIT, inter, acc, unused, scratch);               \
    dtc_share(red, 0, acc);                                                                                        \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    if (tid < 128) {                                                                                               \
        int row = o0 + tid / 8, col = tid % 8;                                                                     \
        if (row < hidden && col < np) out[(long) pick(pr, col) * hidden + row] = dtc_sum(red, 0, tid);             \
    }                                                                                                              \
}

#define DTC_KERNELS(FORM, SPLIT)                                                                                     \
DTC_MATVEC(FORM, SPLIT, dtc_matvec, 1)                                                                              \
DTC_MATVEC(FORM, SPLIT, dtc_matvec16, 2)                                                                            \
DTC_PROJ(FORM, SPLIT, dtc_proj, 0)                                                                                  \
DTC_PROJ(FORM, SPLIT, dtc_projr, 1)                                                                                 \
DTC_GATE_UP(FORM, SPLIT)                                                                                            \
DTC_DOWN(FORM, SPLIT)
DTC_KERNELS(bf16, 0)
DTC_KERNELS(split, 1)
