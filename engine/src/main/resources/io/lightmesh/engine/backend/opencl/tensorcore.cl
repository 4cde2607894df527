// Matrix products on NVIDIA tensor cores from OpenCL C, through inline PTX (mma.sync m16n8k16, bf16 in, fp32
// accumulate). Built only for NVIDIA devices, after which TensorCores checks a small product against the host
// before ResidentOps uses it; every other device (PoCL in CI) runs the fp32 GEMM of resident.cl. NVIDIA's OpenCL
// compiler emits PTX for the device's architecture (.target sm_90 on an H200) and passes GCC-style asm through.
//
// y[m, o] = bf16(x[m, :]) . bf16(W[o, :]) for m < n, o < out (x [n, in] fp32, W [out, in] bf16 or fp32, both
// k-contiguous, in % 8 == 0). Activations (and fp32 weights) are rounded to bf16, nearest even, as they are staged
// into local memory; products accumulate in fp32.
//
// Tiles: a work-group of NT = 256 (8 warps) computes a TM x TN = 128 x 128 tile of y, TK = 32 of k at a time. Warp w
// owns rows (w % 2) * 64 .. + 63 and columns (w / 2) * 32 .. + 31: 4 x 4 mma tiles of 16 x 8, 64 fp32 accumulators
// per work-item. The k tiles of x and W sit in local memory row-major as bf16 with rows of TLD = 40 (80 bytes): a
// fragment load (8 rows x 4 consecutive words per warp) then hits 32 distinct banks. Two buffers: the next k tile is
// loaded from global memory into registers before the math and stored into the other buffer after it, one barrier a
// tile.
//
// Fragments of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), g = lane / 4, t = lane % 4, two bf16 per
// 32-bit register, the lower k in the low half:
//   A (16 x 16, row-major): a0 = A[g][2t..], a1 = A[g + 8][2t..], a2 = A[g][2t + 8..], a3 = A[g + 8][2t + 8..]
//   B (16 x 8, "col": B[k][n] = W[n][k], so W's rows serve as they are): b0 = W[g][2t..], b1 = W[g][2t + 8..]
//   C (16 x 8 fp32): c0, c1 = C[g][2t, 2t + 1], c2, c3 = C[g + 8][2t, 2t + 1]
// Launch: global = ceil(out / TN) * ceil(n / TM) * NT, local = NT; group g: column tile g % ceil(out / TN), row tile
// g / ceil(out / TN).

#define NT 256
#define TM 128
#define TN 128
#define TK 32
#define TLD (TK + 8)

// fp32 -> bf16, round to nearest even (NaN kept a NaN)
inline uint bf16_bits(float f) {
    uint u = as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

inline uint pack2(float lo, float hi) { return bf16_bits(lo) | (bf16_bits(hi) << 16); }

#ifndef TC_EMULATE
inline void mma_bf16(float* c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1, __local uint* scratch) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#define TC_SCRATCH 1
#else
// Tests only (TC_EMULATE defined, on PoCL): the same warp-wide product in plain OpenCL C, the fragments exchanged through
// local memory, so that the tiling, the fragment loads and the epilogue above are checked on devices without
// tensor cores. Every work-item of the group calls it (it has barriers).
inline float bf16f(uint pair, int hi) { return as_float(hi ? (pair & 0xffff0000u) : (pair << 16)); }

inline void mma_bf16(float* c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1, __local uint* scratch) {
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
            sum += bf16f(ap, k & 1) * bf16f(bp, k & 1);
        }
        c[r] += sum;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
#define TC_SCRATCH (NT * 6)
#endif

// Eight consecutive fp32 elements p[k..k+7] of row `row` (zeros past `rows` or past in) as four packed bf16 pairs.
inline uint4 ld8_f32(__global const float* p, int row, int rows, int k, int in) {
    if (row >= rows || k >= in) return (uint4) 0u;
    __global const float* r = p + (long) row * in + k;
    float4 a = vload4(0, r), b = vload4(1, r);
    return (uint4) (pack2(a.x, a.y), pack2(a.z, a.w), pack2(b.x, b.y), pack2(b.z, b.w));
}

// The same from bf16 (raw 16 bits): already packed.
inline uint4 ld8_bf16(__global const ushort* p, int row, int rows, int k, int in) {
    if (row >= rows || k >= in) return (uint4) 0u;
    return as_uint4(vload8(0, p + (long) row * in + k));
}

// One tile row holds TK / 8 = 4 chunks of 8; element f = tid + i * NT of the 512 chunks of a 128-row tile is row f / 4,
// chunk f % 4: two chunks per work-item for each of x and W.
inline void st8(__local ushort* a, int row, int chunk, uint4 v) {
    *((__local uint4*) (a + row * TLD + chunk * 8)) = v;
}

#define GEMM_TC(SUF, WT, LDW)                                                                                        \
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))                                                           \
void gemm_tc_##SUF(__global const WT* w, long wOff, __global const float* x, long xOff, __global float* y,          \
                   long yOff, int n, int in, int out) {                                                            \
    /* declared as uint4 for the 16-byte alignment of the tile stores and the 4-byte one of the fragment loads (a  \
       ushort array may be placed at any even address: on the H200 that faulted) */                                \
    __local uint4 axv[2 * TM * TLD / 8];                                                                           \
    __local uint4 awv[2 * TN * TLD / 8];                                                                           \
    __local ushort* axb = (__local ushort*) axv; /* buffer c at axb + c * TM * TLD */                              \
    __local ushort* awb = (__local ushort*) awv;                                                                   \
    __local uint scratch[TC_SCRATCH];                                                                              \
    int tid = get_local_id(0), lane = tid % 32, warp = tid / 32;                                                   \
    int g = lane >> 2, t = lane & 3;                                                                               \
    int wm = (warp % 2) * 64, wn = (warp / 2) * 32;                                                                \
    int tilesN = (out + TN - 1) / TN;                                                                              \
    int o0 = (get_group_id(0) % tilesN) * TN, m0 = (get_group_id(0) / tilesN) * TM;                               \
    x += xOff;                                                                                                     \
    w += wOff;                                                                                                     \
    int lr0 = tid / 4, lr1 = lr0 + NT / 4, lc = tid % 4;                                                           \
    uint4 px0 = ld8_f32(x, m0 + lr0, n, lc * 8, in), px1 = ld8_f32(x, m0 + lr1, n, lc * 8, in);                   \
    uint4 pw0 = LDW(w, o0 + lr0, out, lc * 8, in), pw1 = LDW(w, o0 + lr1, out, lc * 8, in);                        \
    st8(axb, lr0, lc, px0); st8(axb, lr1, lc, px1);                                                            \
    st8(awb, lr0, lc, pw0); st8(awb, lr1, lc, pw1);                                                            \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    float acc[4][4][4];                                                                                            \
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;      \
    int tiles = (in + TK - 1) / TK;                                                                                \
    for (int kt = 0; kt < tiles; kt++) {                                                                           \
        int cur = kt & 1;                                                                                          \
        if (kt + 1 < tiles) {                                                                                      \
            int k = (kt + 1) * TK + lc * 8;                                                                        \
            px0 = ld8_f32(x, m0 + lr0, n, k, in); px1 = ld8_f32(x, m0 + lr1, n, k, in);                            \
            pw0 = LDW(w, o0 + lr0, out, k, in); pw1 = LDW(w, o0 + lr1, out, k, in);                                \
        }                                                                                                          \
        __local const ushort* a = axb + cur * TM * TLD;                                                                         \
        __local const ushort* b = awb + cur * TN * TLD;                                                                         \
        for (int ks = 0; ks < TK; ks += 16) {                                                                      \
            uint fa[4][4], fb[4][2];                                                                               \
            for (int i = 0; i < 4; i++) {                                                                          \
                __local const ushort* r = a + (wm + i * 16 + g) * TLD + ks + 2 * t;                               \
                fa[i][0] = *((__local const uint*) r);                                                             \
                fa[i][1] = *((__local const uint*) (r + 8 * TLD));                                                 \
                fa[i][2] = *((__local const uint*) (r + 8));                                                       \
                fa[i][3] = *((__local const uint*) (r + 8 * TLD + 8));                                             \
            }                                                                                                      \
            for (int j = 0; j < 4; j++) {                                                                          \
                __local const ushort* r = b + (wn + j * 8 + g) * TLD + ks + 2 * t;                                \
                fb[j][0] = *((__local const uint*) r);                                                             \
                fb[j][1] = *((__local const uint*) (r + 8));                                                       \
            }                                                                                                      \
            for (int i = 0; i < 4; i++)                                                                            \
                for (int j = 0; j < 4; j++)                                                                        \
                    mma_bf16(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j][0], fb[j][1], scratch);      \
        }                                                                                                          \
        if (kt + 1 < tiles) {                                                                                      \
            st8(axb + (cur ^ 1) * TM * TLD, lr0, lc, px0); st8(axb + (cur ^ 1) * TM * TLD, lr1, lc, px1);                                        \
            st8(awb + (cur ^ 1) * TN * TLD, lr0, lc, pw0); st8(awb + (cur ^ 1) * TN * TLD, lr1, lc, pw1);                                        \
        }                                                                                                          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                              \
    }                                                                                                              \
    __global float* yb = y + yOff;                                                                                 \
    for (int i = 0; i < 4; i++) {                                                                                  \
        for (int h = 0; h < 2; h++) {                                                                              \
            int m = m0 + wm + i * 16 + g + 8 * h;                                                                  \
            if (m >= n) continue;                                                                                  \
            for (int j = 0; j < 4; j++) {                                                                          \
                int o = o0 + wn + j * 8 + 2 * t;                                                                   \
                if (o < out) yb[(long) m * out + o] = acc[i][j][2 * h];                                            \
                if (o + 1 < out) yb[(long) m * out + o + 1] = acc[i][j][2 * h + 1];                                \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
}

#ifndef TC_NO_GEMM  // tests: a stand-in product under the same names
GEMM_TC(f32, float, ld8_f32)
GEMM_TC(bf16, ushort, ld8_bf16)
#endif

// ---- causal prefill attention (flash attention, query tiles on tensor cores) ----------------------------------------
// out[r, h, :] = softmax(q[r, h] . K[0 .. lenFirst + r)^T / sqrt(D)) V for r < rows: query row r sees the first
// lenFirst + r keys of the cache (kc, vc [len, KV * D], head h reads kv head h / (H / KV)). Q, K, P and V are rounded
// to bf16 for the products; scores, softmax statistics and the output accumulate in fp32.
// A work-group (8 warps) takes FQ = 128 query rows of one head, warp w rows w * 16 .. + 15, and walks the keys FK = 64
// at a time: the K tile goes to local memory row-major (its rows serve as B fragments like W above), the V tile
// transposed (V^T rows, keys contiguous, so that P . V takes B fragments the same way). S = Q K^T stays in registers;
// its fp32 accumulator fragment (rows g and g + 8, key pairs 2t, 2t + 1 of each 8-key tile) is exactly the layout of
// an A fragment of P for the next product, so P never leaves registers (as in FlashAttention-2). Row maxima and sums
// are reduced over the four lanes of a quad with shfl.sync.bfly; each lane keeps its partial row sum until the end.
// Launch: global = H * ceil(rows / FQ) * NT, local = NT; group g: head g / ceil(rows / FQ), query tile g % that.
#define FQ 128
#define FK 64
#define VLD (FK + 8)
#define FA_NEG (-1e30f)

#ifndef TC_EMULATE
inline float xor_lane(float v, int mask, __local float* scratch) {
    uint r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(as_uint(v)), "r"(mask));
    return as_float(r);
}
#define SHF_SCRATCH 1
#else
inline float xor_lane(float v, int mask, __local float* scratch) {  // tests: the exchange through local memory
    int tid = get_local_id(0);
    scratch[tid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    float o = scratch[(tid & ~31) | ((tid & 31) ^ mask)];
    barrier(CLK_LOCAL_MEM_FENCE);
    return o;
}
#define SHF_SCRATCH NT
#endif

// q[row, h, c], q[row, h, c + 1] scaled and packed as bf16 (zeros past the last row)
inline uint ldq2(__global const float* q, int row, int rows, long rowStride, int c, float scale) {
    if (row >= rows) return 0u;
    __global const float* p = q + (long) row * rowStride + c;
    return pack2(p[0] * scale, p[1] * scale);
}

#define FLASH_TC(DH)                                                                                                 \
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))                                                           \
void flash_tc_##DH(__global const float* q, __global const float* kc, __global const float* vc, __global float* out, \
                   int rows, int heads, int kvHeads, int lenFirst, float scale) {                                  \
    __local uint4 kv4[FK * (DH + 8) / 8];                                                                          \
    __local uint4 vv4[DH * VLD / 8];                                                                               \
    __local uint scratch[TC_SCRATCH];                                                                              \
    __local float shf[SHF_SCRATCH];                                                                                \
    __local ushort* kt = (__local ushort*) kv4;  /* [FK][DH + 8] */                                                \
    __local ushort* vt = (__local ushort*) vv4;  /* [DH][VLD]: V transposed */                                     \
    int tid = get_local_id(0), lane = tid % 32, warp = tid / 32, g = lane >> 2, t = lane & 3;                      \
    int qTiles = (rows + FQ - 1) / FQ;                                                                             \
    int h = get_group_id(0) / qTiles, q0 = (get_group_id(0) % qTiles) * FQ;                                        \
    int kvh = h / (heads / kvHeads), kvd = kvHeads * DH;                                                           \
    long qStride = (long) heads * DH;                                                                              \
    int ra = q0 + warp * 16 + g, rb = ra + 8;                                                                      \
    __global const float* qh = q + (long) h * DH;                                                                  \
    uint qf[DH / 16][4];                                                                                           \
    for (int kk = 0; kk < DH / 16; kk++) {                                                                         \
        int c = kk * 16 + 2 * t;                                                                                   \
        qf[kk][0] = ldq2(qh, ra, rows, qStride, c, scale);                                                         \
        qf[kk][1] = ldq2(qh, rb, rows, qStride, c, scale);                                                         \
        qf[kk][2] = ldq2(qh, ra, rows, qStride, c + 8, scale);                                                     \
        qf[kk][3] = ldq2(qh, rb, rows, qStride, c + 8, scale);                                                     \
    }                                                                                                              \
    float o[DH / 8][4];                                                                                            \
    for (int n = 0; n < DH / 8; n++) for (int e = 0; e < 4; e++) o[n][e] = 0.0f;                                   \
    float ma = FA_NEG, mb = FA_NEG, la = 0.0f, lb = 0.0f;                                                          \
    int limA = lenFirst + ra, limB = lenFirst + rb;  /* keys [0, lim) visible to rows ra, rb */                    \
    int kEnd = lenFirst + min(q0 + FQ, rows) - 1;    /* keys visible to the tile's last row */                     \
    for (int k0 = 0; k0 < kEnd; k0 += FK) {                                                                        \
        for (int c = tid; c < FK * DH / 8; c += NT) {                                                              \
            int key = c / (DH / 8), d8 = (c % (DH / 8)) * 8;                                                       \
            bool in = k0 + key < kEnd;                                                                             \
            long off = (long) (k0 + key) * kvd + kvh * DH + d8;                                                    \
            float4 k1 = in ? vload4(0, kc + off) : (float4) 0.0f, k2 = in ? vload4(1, kc + off) : (float4) 0.0f;   \
            float4 v1 = in ? vload4(0, vc + off) : (float4) 0.0f, v2 = in ? vload4(1, vc + off) : (float4) 0.0f;   \
            *((__local uint4*) (kt + key * (DH + 8) + d8)) =                                                       \
                (uint4) (pack2(k1.x, k1.y), pack2(k1.z, k1.w), pack2(k2.x, k2.y), pack2(k2.z, k2.w));              \
            vt[(d8 + 0) * VLD + key] = (ushort) bf16_bits(v1.x);                                                   \
            vt[(d8 + 1) * VLD + key] = (ushort) bf16_bits(v1.y);                                                   \
            vt[(d8 + 2) * VLD + key] = (ushort) bf16_bits(v1.z);                                                   \
            vt[(d8 + 3) * VLD + key] = (ushort) bf16_bits(v1.w);                                                   \
            vt[(d8 + 4) * VLD + key] = (ushort) bf16_bits(v2.x);                                                   \
            vt[(d8 + 5) * VLD + key] = (ushort) bf16_bits(v2.y);                                                   \
            vt[(d8 + 6) * VLD + key] = (ushort) bf16_bits(v2.z);                                                   \
            vt[(d8 + 7) * VLD + key] = (ushort) bf16_bits(v2.w);                                                   \
        }                                                                                                          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                              \
        float s[FK / 8][4];                                                                                        \
        for (int j = 0; j < FK / 8; j++) {                                                                         \
            for (int e = 0; e < 4; e++) s[j][e] = 0.0f;                                                            \
            for (int kk = 0; kk < DH / 16; kk++) {                                                                 \
                __local const ushort* r = kt + (j * 8 + g) * (DH + 8) + kk * 16 + 2 * t;                          \
                mma_bf16(s[j], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], *((__local const uint*) r),             \
                         *((__local const uint*) (r + 8)), scratch);                                               \
            }                                                                                                      \
        }                                                                                                          \
        float mxa = ma, mxb = mb;                                                                                  \
        for (int j = 0; j < FK / 8; j++) {                                                                         \
            for (int e = 0; e < 2; e++) {                                                                          \
                int key = k0 + j * 8 + 2 * t + e;                                                                  \
                s[j][e] = key < limA ? s[j][e] : FA_NEG;                                                           \
                s[j][2 + e] = key < limB ? s[j][2 + e] : FA_NEG;                                                   \
                mxa = max(mxa, s[j][e]);                                                                           \
                mxb = max(mxb, s[j][2 + e]);                                                                       \
            }                                                                                                      \
        }                                                                                                          \
        mxa = max(mxa, xor_lane(mxa, 1, shf)); mxa = max(mxa, xor_lane(mxa, 2, shf));                              \
        mxb = max(mxb, xor_lane(mxb, 1, shf)); mxb = max(mxb, xor_lane(mxb, 2, shf));                              \
        float ca = exp(ma - mxa), cb = exp(mb - mxb);                                                              \
        ma = mxa; mb = mxb;                                                                                        \
        la *= ca; lb *= cb;                                                                                        \
        for (int j = 0; j < FK / 8; j++) {                                                                         \
            for (int e = 0; e < 2; e++) {                                                                          \
                float pa = s[j][e] > 0.5f * FA_NEG ? exp(s[j][e] - ma) : 0.0f;                                     \
                float pb = s[j][2 + e] > 0.5f * FA_NEG ? exp(s[j][2 + e] - mb) : 0.0f;                             \
                s[j][e] = pa; s[j][2 + e] = pb;                                                                    \
                la += pa; lb += pb;                                                                                \
            }                                                                                                      \
        }                                                                                                          \
        for (int n = 0; n < DH / 8; n++) { o[n][0] *= ca; o[n][1] *= ca; o[n][2] *= cb; o[n][3] *= cb; }           \
        for (int s2 = 0; s2 < FK / 16; s2++) {                                                                     \
            uint a0 = pack2(s[2 * s2][0], s[2 * s2][1]), a1 = pack2(s[2 * s2][2], s[2 * s2][3]);                   \
            uint a2 = pack2(s[2 * s2 + 1][0], s[2 * s2 + 1][1]), a3 = pack2(s[2 * s2 + 1][2], s[2 * s2 + 1][3]);   \
            for (int n = 0; n < DH / 8; n++) {                                                                     \
                __local const ushort* r = vt + (n * 8 + g) * VLD + s2 * 16 + 2 * t;                               \
                mma_bf16(o[n], a0, a1, a2, a3, *((__local const uint*) r), *((__local const uint*) (r + 8)),       \
                         scratch);                                                                                 \
            }                                                                                                      \
        }                                                                                                          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                              \
    }                                                                                                              \
    la += xor_lane(la, 1, shf); la += xor_lane(la, 2, shf);                                                        \
    lb += xor_lane(lb, 1, shf); lb += xor_lane(lb, 2, shf);                                                        \
    for (int n = 0; n < DH / 8; n++) {                                                                             \
        int c = n * 8 + 2 * t;                                                                                     \
        if (ra < rows) {                                                                                           \
            out[(long) ra * qStride + (long) h * DH + c] = o[n][0] / la;                                           \
            out[(long) ra * qStride + (long) h * DH + c + 1] = o[n][1] / la;                                       \
        }                                                                                                          \
        if (rb < rows) {                                                                                           \
            out[(long) rb * qStride + (long) h * DH + c] = o[n][2] / lb;                                           \
            out[(long) rb * qStride + (long) h * DH + c + 1] = o[n][3] / lb;                                       \
        }                                                                                                          \
    }                                                                                                              \
}

FLASH_TC(32)
FLASH_TC(64)
FLASH_TC(128)

// ---- lightning attention in block form (prefill), products on tensor cores ----------------------------------------
// The recurrence of lightning_scan, S_t = r S_(t-1) + k_t^T v_t, o_t = q_t S_t (r = exp(-decay[h]), S [D][D] per
// head, fp32), computed a block of LB = 64 tokens at a time (the block form of the Lightning Attention paper; the
// result does not depend on the block length): with the state S_b before block b and local positions t, s < m,
//   KV_b      = sum_s r^(m-1-s) k_s^T v_s                        (lin_kv: one product per block, all blocks at once)
//   S_(b+1)   = r^m S_b + KV_b                                    (lin_states: a scan over the blocks, elementwise)
//   o_t       = r^(t+1) q_t S_b + sum_(s<=t) r^(t-s) (q_t . k_s) v_s   (lin_out: inter- and intra-block products)
// qkv [rows][H][3][D] (q, k, v of a head side by side, as lightning_scan reads them), out [rows][H * D].
// Q, K, V and S are rounded to bf16 for the products; all sums and the state stay fp32.
#define LB 64
#define LLD (LB + 8)

// KV_b[d][e] for block b of head h into kv [blocks][H][D][D]: A = (K scaled)^T, B = V (both transposed into local
// memory, tokens contiguous). Warp w takes the 16 x 8 output tiles w, w + 8, ...
// Launch: global = H * blocks * NT, local = NT; group g: head g / blocks, block g % blocks.
#define LIN_KV(DH)                                                                                                   \
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))                                                           \
void lin_kv_##DH(__global const float* qkv, __global const float* decay, __global float* kv, int rows, int heads) { \
    __local uint4 kt4[DH * LLD / 8];                                                                               \
    __local uint4 vt4[DH * LLD / 8];                                                                               \
    __local uint scratch[TC_SCRATCH];                                                                              \
    __local ushort* kt = (__local ushort*) kt4;  /* [D][LLD]: (r^(m-1-s) k_s)^T */                                 \
    __local ushort* vt = (__local ushort*) vt4;  /* [D][LLD]: v_s^T */                                             \
    int tid = get_local_id(0), lane = tid % 32, warp = tid / 32, g = lane >> 2, t = lane & 3;                      \
    int blocks = (rows + LB - 1) / LB, h = get_group_id(0) / blocks, b = get_group_id(0) % blocks;                 \
    int m = min(LB, rows - b * LB);                                                                                \
    float lambda = decay[h];                                                                                       \
    long stride = 3L * heads * DH;                                                                                 \
    for (int c = tid; c < LB * DH; c += NT) {                                                                      \
        int s = c / DH, d = c % DH;                                                                                \
        float kval = 0.0f, vval = 0.0f;                                                                            \
        if (s < m) {                                                                                               \
            __global const float* p = qkv + (long) (b * LB + s) * stride + (long) h * 3 * DH;                      \
            kval = p[DH + d] * exp(-lambda * (float) (m - 1 - s));                                                 \
            vval = p[2 * DH + d];                                                                                  \
        }                                                                                                          \
        kt[d * LLD + s] = (ushort) bf16_bits(kval);                                                                \
        vt[d * LLD + s] = (ushort) bf16_bits(vval);                                                                \
    }                                                                                                              \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    __global float* out = kv + ((long) b * heads + h) * DH * DH;                                                   \
    for (int p = warp; p < (DH / 16) * (DH / 8); p += 8) {                                                         \
        int mt = p / (DH / 8), nt = p % (DH / 8);                                                                  \
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};                                                                   \
        for (int ks = 0; ks < LB; ks += 16) {                                                                      \
            __local const ushort* a = kt + (mt * 16 + g) * LLD + ks + 2 * t;                                      \
            __local const ushort* bb = vt + (nt * 8 + g) * LLD + ks + 2 * t;                                      \
            mma_bf16(acc, *((__local const uint*) a), *((__local const uint*) (a + 8 * LLD)),                      \
                     *((__local const uint*) (a + 8)), *((__local const uint*) (a + 8 * LLD + 8)),                 \
                     *((__local const uint*) bb), *((__local const uint*) (bb + 8)), scratch);                     \
        }                                                                                                          \
        int d = mt * 16 + g, e = nt * 8 + 2 * t;                                                                   \
        out[d * DH + e] = acc[0]; out[d * DH + e + 1] = acc[1];                                                    \
        out[(d + 8) * DH + e] = acc[2]; out[(d + 8) * DH + e + 1] = acc[3];                                        \
    }                                                                                                              \
}

// The scan over blocks, one work-item per state element (h, i, j): kv[b] (KV_b) is replaced by S_b, the state
// before block b, and state ends as the state after the last block.
// Launch: global = ceil(H * D * D / NT) * NT, local = NT.
__kernel void lin_states(__global float* kv, __global const float* decay, __global float* state, int rows, int heads,
                         int dim) {
    long gid = get_global_id(0), per = (long) dim * dim;
    if (gid >= heads * per) return;
    int h = gid / per;
    float lambda = decay[h];
    int blocks = (rows + LB - 1) / LB;
    float s = state[gid];
    for (int b = 0; b < blocks; b++) {
        int m = min(LB, rows - b * LB);
        long o = (long) b * heads * per + gid;
        float kvb = kv[o];
        kv[o] = s;
        s = exp(-lambda * (float) m) * s + kvb;
    }
    state[gid] = s;
}

// o for block b of head h: rows mt * 16 .. + 15 of the block (mt = warp % 4), output columns half (warp / 4) of D.
// First the inter-block part r^(t+1) q_t S_b (S_b^T in local memory as B), then the intra-block part: the scores
// Q K^T (K in local memory), weighted r^(t-s) for s <= t and 0 above the diagonal, times V (V^T in local memory);
// the weighted scores go from the accumulator fragment straight to an A fragment, as in flash_tc.
// Launch: global = H * blocks * NT, local = NT; group g: head g / blocks, block g % blocks.
#define LIN_OUT(DH)                                                                                                  \
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))                                                           \
void lin_out_##DH(__global const float* qkv, __global const float* decay, __global const float* kv,              \
                  __global float* out, int rows, int heads) {                                                      \
    /* phase 1: S_b^T [D][D + 8]; phase 2: K [LB][D + 8] and V^T [D][LLD] in the same memory */                    \
    __local uint4 mem4[(DH * (DH + 8) > LB * (DH + 8) + DH * LLD ? DH * (DH + 8) : LB * (DH + 8) + DH * LLD) / 8]; \
    __local uint scratch[TC_SCRATCH];                                                                              \
    __local ushort* mem = (__local ushort*) mem4;                                                                  \
    int tid = get_local_id(0), lane = tid % 32, warp = tid / 32, g = lane >> 2, t = lane & 3;                      \
    int blocks = (rows + LB - 1) / LB, h = get_group_id(0) / blocks, b = get_group_id(0) % blocks;                 \
    int m = min(LB, rows - b * LB), mt = warp % 4, hv = warp / 4;                                                \
    float lambda = decay[h];                                                                                       \
    long stride = 3L * heads * DH;                                                                                 \
    __global const float* qh = qkv + (long) (b * LB) * stride + (long) h * 3 * DH;                                 \
    int ta = mt * 16 + g, tb = ta + 8;  /* local rows of this work-item */                                         \
    uint qf[DH / 16][4];                                                                                           \
    for (int kk = 0; kk < DH / 16; kk++) {                                                                         \
        int c = kk * 16 + 2 * t;                                                                                   \
        qf[kk][0] = ldq2(qh, ta, m, stride, c, 1.0f);                                                              \
        qf[kk][1] = ldq2(qh, tb, m, stride, c, 1.0f);                                                              \
        qf[kk][2] = ldq2(qh, ta, m, stride, c + 8, 1.0f);                                                          \
        qf[kk][3] = ldq2(qh, tb, m, stride, c + 8, 1.0f);                                                          \
    }                                                                                                              \
    __global const float* sb = kv + ((long) b * heads + h) * DH * DH;                                              \
    for (int c = tid; c < DH * DH; c += NT) {  /* S^T: row j holds S[i][j] for i = 0 .. D-1 */                     \
        int i = c / DH, j = c % DH;                                                                                \
        mem[j * (DH + 8) + i] = (ushort) bf16_bits(sb[c]);                                                         \
    }                                                                                                              \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    float o[DH / 16][4];                                                                                           \
    for (int n = 0; n < DH / 16; n++) {                                                                            \
        for (int e = 0; e < 4; e++) o[n][e] = 0.0f;                                                                \
        for (int kk = 0; kk < DH / 16; kk++) {                                                                     \
            __local const ushort* r = mem + ((hv * DH / 2) + n * 8 + g) * (DH + 8) + kk * 16 + 2 * t;           \
            mma_bf16(o[n], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], *((__local const uint*) r),                 \
                     *((__local const uint*) (r + 8)), scratch);                                                   \
        }                                                                                                          \
    }                                                                                                              \
    float ia = exp(-lambda * (float) (ta + 1)), ib = exp(-lambda * (float) (tb + 1));                              \
    for (int n = 0; n < DH / 16; n++) { o[n][0] *= ia; o[n][1] *= ia; o[n][2] *= ib; o[n][3] *= ib; }             \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    __local ushort* kt = mem;                       /* [LB][D + 8] */                                              \
    __local ushort* vt = mem + LB * (DH + 8);       /* [D][LLD] */                                                 \
    for (int c = tid; c < LB * DH; c += NT) {                                                                      \
        int s = c / DH, d = c % DH;                                                                                \
        float kval = 0.0f, vval = 0.0f;                                                                            \
        if (s < m) {                                                                                               \
            __global const float* p = qh + (long) s * stride;                                                      \
            kval = p[DH + d];                                                                                      \
            vval = p[2 * DH + d];                                                                                  \
        }                                                                                                          \
        kt[s * (DH + 8) + d] = (ushort) bf16_bits(kval);                                                           \
        vt[d * LLD + s] = (ushort) bf16_bits(vval);                                                                \
    }                                                                                                              \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    float sc[LB / 8][4];                                                                                           \
    for (int j = 0; j < LB / 8; j++) {                                                                             \
        for (int e = 0; e < 4; e++) sc[j][e] = 0.0f;                                                               \
        for (int kk = 0; kk < DH / 16; kk++) {                                                                     \
            __local const ushort* r = kt + (j * 8 + g) * (DH + 8) + kk * 16 + 2 * t;                              \
            mma_bf16(sc[j], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], *((__local const uint*) r),                \
                     *((__local const uint*) (r + 8)), scratch);                                                   \
        }                                                                                                          \
        for (int e = 0; e < 2; e++) {                                                                              \
            int s = j * 8 + 2 * t + e;                                                                             \
            sc[j][e] = s <= ta ? sc[j][e] * exp(-lambda * (float) (ta - s)) : 0.0f;                                \
            sc[j][2 + e] = s <= tb ? sc[j][2 + e] * exp(-lambda * (float) (tb - s)) : 0.0f;                        \
        }                                                                                                          \
    }                                                                                                              \
    for (int s2 = 0; s2 < LB / 16; s2++) {                                                                         \
        uint a0 = pack2(sc[2 * s2][0], sc[2 * s2][1]), a1 = pack2(sc[2 * s2][2], sc[2 * s2][3]);                   \
        uint a2 = pack2(sc[2 * s2 + 1][0], sc[2 * s2 + 1][1]), a3 = pack2(sc[2 * s2 + 1][2], sc[2 * s2 + 1][3]);   \
        for (int n = 0; n < DH / 16; n++) {                                                                        \
            __local const ushort* r = vt + ((hv * DH / 2) + n * 8 + g) * LLD + s2 * 16 + 2 * t;                 \
            mma_bf16(o[n], a0, a1, a2, a3, *((__local const uint*) r), *((__local const uint*) (r + 8)), scratch);  \
        }                                                                                                          \
    }                                                                                                              \
    long hd = (long) heads * DH;                                                                                   \
    for (int n = 0; n < DH / 16; n++) {                                                                            \
        int c = h * DH + hv * DH / 2 + n * 8 + 2 * t;                                                            \
        if (ta < m) { out[(long) (b * LB + ta) * hd + c] = o[n][0]; out[(long) (b * LB + ta) * hd + c + 1] = o[n][1]; } \
        if (tb < m) { out[(long) (b * LB + tb) * hd + c] = o[n][2]; out[(long) (b * LB + tb) * hd + c + 1] = o[n][3]; } \
    }                                                                                                              \
}

LIN_KV(32)
LIN_KV(64)
LIN_KV(128)
LIN_OUT(32)
LIN_OUT(64)
LIN_OUT(128)

// (v2 comes last in this file: NVIDIA's build log lists kernels from the last defined and is cut after a few KiB, so
// -cl-nv-verbose shows the v2 forms' registers this way)

#ifndef TC_NO_GEMM2  // the probe's second build, where a compiler rejects v2: v1 and the rest without it
// ---- GEMM v2: ldmatrix fragments, cp.async multi-stage pipeline, XOR-swizzled tiles ---------------------------------
// y[m, o] = x[m, :] . W[o, :] with x [n, in] and W [out, in] both bf16 (raw 16 bits, k-contiguous; in % 8 == 0 and
// both row starts 16-byte aligned), fp32 accumulate and fp32 y. The activations are rounded to bf16 once per product
// by to_bf16 below (the same nearest-even rounding as v1 applies while staging), so that both operands can be copied
// global -> local by cp.async without passing through registers.
//
// Tiles: a work-group of WM x WN warps computes a BM x BN tile of y, K2 = 32 of k per stage, ST stages in flight
// (cp.async.commit_group per stage, cp.async.wait_group ST - 2 before a stage is used, one barrier per k tile: it also
// tells that every warp finished the stage that the next copy overwrites). Warp w owns rows (w % WM) * BM / WM and
// columns (w / WM) * BN / WN: FM x FN mma tiles of 16 x 8. NVIDIA's OpenCL gives 48 KiB of local memory per group,
// which bounds ST * (BM + BN) * K2 * 2 bytes (128 x 128 x 3 stages = 48 KiB).
//
// Local layout of a stage: BM rows of x, then BN rows of W, each K2 bf16 = four 16-byte chunks; chunk c of row r is
// stored at chunk c ^ ((r >> 1) & 3) (XOR swizzle): ldmatrix reads one 16-byte chunk from each of 8 consecutive rows
// (rows 64 bytes apart), which then fall in 8 distinct 16-byte bank groups (no conflicts); the cp.async writes stay
// whole 16-byte chunks.
//
// ldmatrix.x4 (non-transposed): lane l gives the address of one 8-element row; lanes 8i .. 8i + 7 the rows of matrix
// i; lane l receives in register i the pair (row l / 4, elements 2 (l % 4) ..) of matrix i. So
//   A (16 x 16 of x): lane l -> row l % 16, k chunk l / 16: registers a0, a1, a2, a3 as mma wants them;
//   B (two 8-column tiles of W, 16 x 16): lane l -> W row (l / 16) * 8 + l % 8, k chunk (l / 8) % 2: registers b0, b1
//   of the first tile, b0, b1 of the second (W's rows are B's columns, "col" layout, no transpose needed).
// Launch: global = ceil(out / BN) * ceil(n / BM) * WM * WN * 32, local = WM * WN * 32; group g: column tile
// g % ceil(out / BN), row tile g / ceil(out / BN).
#define K2 32

// element offset of chunk c (8 elements) of row r in a stage
inline int sw2(int r, int c) { return r * K2 + ((c ^ ((r >> 1) & 3)) << 3); }

// Local memory is addressed as (base, sbase, off): element off of the __local array at base, whose shared-window
// address (PTX's .shared state space, what cp.async and ldmatrix take) is sbase; the emulation uses base + off.
#ifndef TC_EMULATE
// The shared-window address of a __local pointer, once per kernel: NVIDIA's OpenCL gives __local pointers as .shared
// addresses (checked by the probe's products on the H200).
inline uint lds_base(__local const ushort* p) { return (uint) (ulong) p; }

// 16 bytes global -> local, asynchronous; bytes = 0 writes zeros (rows or k past the end)
inline void cp16(__local ushort* base, uint sbase, int off, __global const ushort* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(sbase + 2 * off), "l"((ulong) src), "r"(bytes));
}
inline void cp_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
#define CP_WAIT(N) asm volatile("cp.async.wait_group " #N ";" ::: "memory")

inline void ldsm4(uint* r, __local const ushort* base, uint sbase, int off, __local uint* scratch) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(sbase + 2 * off));
}
#define TC2_SCRATCH 1
#else
// Tests only (PoCL): cp.async as a plain copy (commit and wait then have nothing to do; the barriers stay), ldmatrix
// as the exchange of the lanes' row offsets through local memory. Every work-item calls ldsm4 (it has barriers).
inline uint lds_base(__local const ushort* p) { return 0; }

inline void cp16(__local ushort* base, uint sbase, int off, __global const ushort* src, int bytes) {
    *((__local uint4*) (base + off)) = bytes ? *((__global const uint4*) src) : (uint4) 0u;
}
inline void cp_commit(void) {}
#define CP_WAIT(N)

inline void ldsm4(uint* r, __local const ushort* base, uint sbase, int off, __local uint* scratch) {
    int tid = get_local_id(0), lane = tid % 32;
    __local uint* s = scratch + (tid / 32) * 32;
    s[lane] = (uint) off;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = 0; i < 4; i++) r[i] = *((__local const uint*) (base + s[i * 8 + lane / 4]) + lane % 4);
    barrier(CLK_LOCAL_MEM_FENCE);
}
#define TC2_SCRATCH (256 * 6)
#endif

// fp32 -> bf16 (nearest even), eight elements a work-item: xb[i] = bf16(x[xOff + i]) for i < count (count % 8 == 0).
// Launch: global = ceil(count / 8 / 256) * 256, local = 256.
__kernel void to_bf16(__global const float* x, long xOff, __global ushort* xb, long count) {
    long i = get_global_id(0) * 8L;
    if (i >= count) return;
    __global const float* p = x + xOff + i;
    float4 a = vload4(0, p), b = vload4(1, p);
    *((__global uint4*) (xb + i)) = (uint4) (pack2(a.x, a.y), pack2(a.z, a.w), pack2(b.x, b.y), pack2(b.z, b.w));
}

// The loops over the accumulators and fragments must unroll fully, so that those arrays stay in registers. NVIDIA's
// compiler does so unasked (200+ TFLOP/s on the H200 without pragmas); clang 15 for nvptx leaves some nests rolled
// and the accumulators in local memory unless told: -D TC2_UNROLL_PRAGMAS (through -Dlightmesh.opencl.options) adds
// _Pragma("unroll") to each. Never in the emulation: unrolled around its barriers, PoCL takes minutes, not seconds.
#if !defined(TC_EMULATE) && defined(TC2_UNROLL_PRAGMAS)
#define TC2_UNROLL _Pragma("unroll")
#else
#define TC2_UNROLL
#endif

// Copies k tile kt (K2 wide) of x's rows m0 .. m0 + TBM - 1 and W's rows o0 .. o0 + TBN - 1 into the stage at element
// so of the local tiles (sm, shared address sb). Work-item
// tid copies chunk lc = tid % 4 of rows lrow + i * RS (RS = T / 4 rows a pass; RS % 8 == 0, so the swizzle of those
// rows is lrow's and soff + i * RS * K2 is their place): x's rows first, then W's. The kernel's names: T work-items,
// tile TBM x TBN, xa / wa the global addresses of row lrow's chunk lc at k = 0, rstep = RS rows of either.
#define TC2_LOAD(so, kt)                                                                                             \
    {                                                                                                                \
        int k = (kt) * K2 + lc * 8;                                                                                  \
        for (int i = 0; i < TBM / RS; i++) {                                                                         \
            bool ok = m0 + lrow + i * RS < n && k < in;                                                              \
            cp16(sm, sb, (so) + soff + i * RS * K2, ok ? xa + i * rstep + (kt) * K2 : x, ok ? 16 : 0);               \
        }                                                                                                            \
        for (int i = 0; i < TBN / RS; i++) {                                                                         \
            bool ok = o0 + lrow + i * RS < out && k < in;                                                            \
            cp16(sm, sb, (so) + TBM * K2 + soff + i * RS * K2, ok ? wa + i * rstep + (kt) * K2 : w, ok ? 16 : 0);    \
        }                                                                                                            \
    }

#define GEMM_TC2(NAME, BM, BN, WM, WN, ST, WAIT)                                                                     \
__kernel __attribute__((reqd_work_group_size(WM * WN * 32, 1, 1)))                                                   \
void NAME(__global const ushort* w, long wOff, __global const ushort* x, long xOff, __global float* y, long yOff,    \
          int n, int in, int out) {                                                                                  \
    __local uint4 smem[ST * (BM + BN) * K2 / 8];                                                                     \
    __local ushort* sm = (__local ushort*) smem; /* stage s at sm + s * (BM + BN) * K2 */                            \
    uint sb = lds_base(sm);                                                                                          \
    __local uint scratch[TC2_SCRATCH];                                                                               \
    const int T = WM * WN * 32, FM = BM / WM / 16, FN = BN / WN / 8, TBM = BM, TBN = BN, RS = T / 4;                 \
    const int STAGE = (BM + BN) * K2;                                                                                \
    int tid = get_local_id(0), lane = tid % 32, warp = tid / 32;                                                     \
    int g = lane >> 2, t = lane & 3;                                                                                 \
    int wm = (warp % WM) * (BM / WM), wn = (warp / WM) * (BN / WN);                                                  \
    int tilesN = (out + BN - 1) / BN;                                                                                \
    int o0 = (get_group_id(0) % tilesN) * BN, m0 = (get_group_id(0) / tilesN) * BM;                                  \
    x += xOff;                                                                                                       \
    w += wOff;                                                                                                       \
    int tiles = (in + K2 - 1) / K2;                                                                                  \
    int lrow = tid / 4, lc = tid % 4, soff = sw2(lrow, lc);                                                          \
    long rstep = (long) RS * in;                                                                                     \
    __global const ushort* xa = x + (long) (m0 + lrow) * in + lc * 8;                                                \
    __global const ushort* wa = w + (long) (o0 + lrow) * in + lc * 8;                                                \
    for (int s = 0; s < ST - 1; s++) {                                                                               \
        if (s < tiles) TC2_LOAD(s * STAGE, s)                                                                        \
        cp_commit();                                                                                                 \
    }                                                                                                                \
    float acc[BM / WM / 16][BN / WN / 8][4];                                                                         \
    TC2_UNROLL for (int i = 0; i < FM; i++)                                                                          \
        TC2_UNROLL for (int j = 0; j < FN; j++)                                                                      \
            TC2_UNROLL for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;                                              \
    /* this lane's ldmatrix rows: A row wm + lane % 16 (+ 16 i), k chunk lane / 16 (+ 2 for k 16 .. 31); B row       \
       BM + wn + (lane / 16) * 8 + lane % 8 (+ 16 j), k chunk (lane / 8) % 2 (+ 2). Rows 16 apart share a swizzle,   \
       so four offsets serve every fragment of the tile. */                                                          \
    int ar = wm + (lane % 16), br = BM + wn + (lane / 16) * 8 + (lane % 8);                                          \
    int aoff0 = sw2(ar, lane / 16), aoff1 = sw2(ar, 2 + lane / 16);                                                  \
    int boff0 = sw2(br, (lane / 8) % 2), boff1 = sw2(br, 2 + (lane / 8) % 2);                                        \
    int rd = 0, wr = ST - 1; /* the stage read this k tile, the stage written */                                     \
    for (int kt = 0; kt < tiles; kt++) {                                                                             \
        CP_WAIT(WAIT);                                                                                               \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                                \
        if (kt + ST - 1 < tiles) TC2_LOAD(wr * STAGE, kt + ST - 1)                                                   \
        cp_commit();                                                                                                 \
        int so = rd * STAGE;                                                                                         \
        rd = rd == ST - 1 ? 0 : rd + 1;                                                                              \
        wr = wr == ST - 1 ? 0 : wr + 1;                                                                              \
        TC2_UNROLL for (int kc = 0; kc < 2; kc++) {                                                                  \
            uint fa[BM / WM / 16][4], fb[BN / WN / 16][4];                                                           \
            int ao = kc ? aoff1 : aoff0, bo = kc ? boff1 : boff0;                                                    \
            TC2_UNROLL for (int i = 0; i < FM; i++) ldsm4(fa[i], sm, sb, so + ao + i * 16 * K2, scratch);            \
            TC2_UNROLL for (int j = 0; j < FN / 2; j++) ldsm4(fb[j], sm, sb, so + bo + j * 16 * K2, scratch);        \
            TC2_UNROLL for (int i = 0; i < FM; i++)                                                                  \
                TC2_UNROLL for (int j = 0; j < FN; j++)                                                              \
                    mma_bf16(acc[i][j], fa[i][0], fa[i][1], fa[i][2], fa[i][3], fb[j / 2][2 * (j % 2)],              \
                             fb[j / 2][2 * (j % 2) + 1], scratch);                                                   \
        }                                                                                                            \
    }                                                                                                                \
    CP_WAIT(0);                                                                                                      \
    __global float* yb = y + yOff;                                                                                   \
    TC2_UNROLL for (int i = 0; i < FM; i++) {                                                                        \
        TC2_UNROLL for (int h = 0; h < 2; h++) {                                                                     \
            int m = m0 + wm + i * 16 + g + 8 * h;                                                                    \
            if (m >= n) continue;                                                                                    \
            __global float* yr = yb + (long) m * out;                                                                \
            TC2_UNROLL for (int j = 0; j < FN; j++) {                                                                \
                int o = o0 + wn + j * 8 + 2 * t;                                                                     \
                if (o + 1 < out && ((yOff + (long) m * out + o) & 1) == 0) {                                         \
                    *((__global float2*) (yr + o)) = (float2) (acc[i][j][2 * h], acc[i][j][2 * h + 1]);              \
                } else {                                                                                             \
                    if (o < out) yr[o] = acc[i][j][2 * h];                                                           \
                    if (o + 1 < out) yr[o + 1] = acc[i][j][2 * h + 1];                                               \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
}

#ifndef TC_NO_GEMM
// v2 (default): 128 x 128, 8 warps of 64 x 32, 3 stages (48 KiB). The fastest form on the H200 (208-227 TFLOP/s at
// the 1.25B model's prefill shapes against 185-206 for v2w4 and 166-195 for v2wide, BENCHMARKS.md)
GEMM_TC2(gemm_tc2_bf16, 128, 128, 2, 4, 3, 1)
// v2w4: 128 x 128, 4 warps of 64 x 64, 3 stages (48 KiB): fewer fragment loads per mma, fewer warps to hide latency
GEMM_TC2(gemm_tc2w4_bf16, 128, 128, 2, 2, 3, 1)
// v2wide: 128 x 256, 8 warps of 64 x 64, 2 stages (48 KiB): fewer fragment loads per product, one stage less
GEMM_TC2(gemm_tc2wide_bf16, 128, 256, 2, 4, 2, 0)
// v2s: 64 x 128, 4 warps of 32 x 64, 3 stages (36 KiB): twice the groups of v2 for products that would not fill the
// GPU with 128 x 128 tiles (an expert's ~1K rows by 1024 columns: 64 groups on 132 SMs)
GEMM_TC2(gemm_tc2s_bf16, 64, 128, 2, 2, 3, 1)
// v2n: 128 x 64, 4 warps of 64 x 32, 4 stages (48 KiB): one stage more in flight than v2, half its columns a group
GEMM_TC2(gemm_tc2n_bf16, 128, 64, 2, 2, 4, 2)
#endif
#endif  // TC_NO_GEMM2
