// Decode kernels v3 (-Dlightmesh.decode.kernels=v3; ResidentOps builds this file as a program of its own and checks
// it against v2 at start-up, falling back to v2 if either fails). The same math as resident.cl's v2 twins (named in
// each comment), laid out to put more weight bytes in flight per warp and to shorten each launch's chain of dependent
// memory round trips, which at batch 1 is most of a v2 launch (an H200 profile: ~9 us a product launch beyond its
// bytes at ~3.5 TB/s). Kernel names start with d3_ and carry the x rows they keep (n1: one, n8: up to MAXN) and the
// weight rows a lane group streams (r1, r2, r4). Math only: buffers, ranges and the choice of form are FusedOps'.
// bf16 weights only (raw 16 bits in ushort, 8 to a 16-byte load), rows of in % 8 == 0; the launcher keeps v2 for the
// rest. Portable OpenCL C 1.2; PTX (shfl.sync, membar.gl) only under LM_NVIDIA, as in resident.cl.
// Sections: the dot products; the products (d3_matvec, d3_down, d3_gate_up, d3_proj, d3_projr); the one-pass norm and
// router (d3_norm_route); then the fused forms (left out with D3_NO_FUSED, the build's fallback): the output projection
// with the norm and router in its last group (d3_out_route), the experts' down projection with the residual and next
// norm (d3_down_norm), and a whole lightning layer at one row (d3_proj_light). A step of the 1.25B shape at batch 1:
// 114 launches with v2, 68 with the fused forms.

#define NT 256
#define WL 32
#define WG (NT / WL)
#define MAXN 8
/** The most experts d3_norm_route takes (its per-work-item logits live in registers). */
#define D3_MAXE 32

#if defined(LM_NVIDIA) && !defined(LM_NO_SHFL)
#define D3_SHFL 1
inline float d3_xor(float v, int m) {
    uint r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(as_uint(v)), "r"(m));
    return as_float(r);
}
#endif

// Eight bf16 in a uint4 (one 16-byte load) widened to fp32: element 2i is the low half of word i.
inline float8 d3_widen(uint4 u) {
    return (float8) (as_float(u.x << 16), as_float(u.x & 0xffff0000u), as_float(u.y << 16), as_float(u.y & 0xffff0000u),
                     as_float(u.z << 16), as_float(u.z & 0xffff0000u), as_float(u.w << 16), as_float(u.w & 0xffff0000u));
}

inline float d3_hsum(float8 s) { return dot(s.lo, (float4) 1.0f) + dot(s.hi, (float4) 1.0f); }

// acc[c] for c < CNT summed over the WL lanes of each lane group, every lane getting the totals. Every work-item of
// the group calls it (the fallback has barriers). scratch: NT floats (the fallback's; unused with the shuffle).
#ifdef D3_SHFL
#define D3_LANE_TOTALS(acc, CNT, scratch)                                                                            \
    for (int c_ = 0; c_ < (CNT); c_++) {                                                                             \
        float v_ = acc[c_];                                                                                          \
        for (int m_ = WL / 2; m_ > 0; m_ >>= 1) v_ += d3_xor(v_, m_);                                                \
        acc[c_] = v_;                                                                                                \
    }
#else
#define D3_LANE_TOTALS(acc, CNT, scratch)                                                                            \
    for (int c_ = 0; c_ < (CNT); c_++) {                                                                             \
        int t_ = get_local_id(0), b_ = t_ & ~(WL - 1);                                                               \
        scratch[t_] = acc[c_];                                                                                       \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                                \
        float v_ = 0.0f;                                                                                             \
        for (int l_ = 0; l_ < WL; l_++) v_ += scratch[b_ + l_];                                                      \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                                \
        acc[c_] = v_;                                                                                                \
    }
#endif

// acc[r * NX + p] += W_r . x[xr[p]] for r < RR weight rows (wp[r], bf16, in % 8 == 0) and p < np <= NX x rows, over
// lane `lane`'s 8-element chunks lane, lane + WL, ...: every row's chunks of a pass loaded before any is used (U
// chunks a row, 16 loads a lane at RR 2 and 4, 8 at RR 1), then passes of U / 2 and single chunks for the rest. The
// weights stay raw (4 registers a load) until used. NX 1 keeps one accumulator a row: the batch-1 form.
#define D3_U(RR) ((RR) >= 4 ? 4 : 8)
#define D3_DOT(NX, RR)                                                                                               \
inline void d3_dot_n##NX##_r##RR(__global const ushort* const* wp, __global const float* x, int in, const int* xr,  \
                                 int np, int lane, float* acc) {                                                   \
    __global const float8* x8 = (__global const float8*) x;                                                        \
    int in8 = in >> 3;                                                                                             \
    int i = lane;                                                                                                  \
    for (; i + (D3_U(RR) - 1) * WL < in8; i += D3_U(RR) * WL) {                                                                  \
        uint4 wv[RR * D3_U(RR)];                                                                                          \
        for (int r = 0; r < RR; r++)                                                                               \
            for (int u = 0; u < D3_U(RR); u++) wv[r * D3_U(RR) + u] = ((__global const uint4*) wp[r])[i + u * WL];               \
        for (int p = 0; p < NX; p++) {                                                                             \
            if (p < np) {                                                                                          \
                __global const float8* xp = x8 + (long) xr[p] * in8 + i;                                           \
                float8 s[RR];                                                                                      \
                float8 xv = xp[0];                                                                                 \
                for (int r = 0; r < RR; r++) s[r] = d3_widen(wv[r * D3_U(RR)]) * xv;                                      \
                for (int u = 1; u < D3_U(RR); u++) {                                                                      \
                    xv = xp[u * WL];                                                                               \
                    for (int r = 0; r < RR; r++) s[r] = fma(d3_widen(wv[r * D3_U(RR) + u]), xv, s[r]);                    \
                }                                                                                                  \
                for (int r = 0; r < RR; r++) acc[r * NX + p] += d3_hsum(s[r]);                                     \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
    for (; i + (D3_U(RR) / 2 - 1) * WL < in8; i += (D3_U(RR) / 2) * WL) {                                                        \
        uint4 wv[RR * (D3_U(RR) / 2)];                                                                                    \
        for (int r = 0; r < RR; r++)                                                                               \
            for (int u = 0; u < D3_U(RR) / 2; u++) wv[r * (D3_U(RR) / 2) + u] = ((__global const uint4*) wp[r])[i + u * WL];     \
        for (int p = 0; p < NX; p++) {                                                                             \
            if (p < np) {                                                                                          \
                __global const float8* xp = x8 + (long) xr[p] * in8 + i;                                           \
                float8 s[RR];                                                                                      \
                float8 xv = xp[0];                                                                                 \
                for (int r = 0; r < RR; r++) s[r] = d3_widen(wv[r * (D3_U(RR) / 2)]) * xv;                                \
                for (int u = 1; u < D3_U(RR) / 2; u++) {                                                                  \
                    xv = xp[u * WL];                                                                               \
                    for (int r = 0; r < RR; r++) s[r] = fma(d3_widen(wv[r * (D3_U(RR) / 2) + u]), xv, s[r]);              \
                }                                                                                                  \
                for (int r = 0; r < RR; r++) acc[r * NX + p] += d3_hsum(s[r]);                                     \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
    for (; i < in8; i += WL) {                                                                                     \
        uint4 wv[RR];                                                                                              \
        for (int r = 0; r < RR; r++) wv[r] = ((__global const uint4*) wp[r])[i];                                   \
        for (int p = 0; p < NX; p++) {                                                                             \
            if (p < np) {                                                                                          \
                float8 xv = x8[(long) xr[p] * in8 + i];                                                            \
                for (int r = 0; r < RR; r++) acc[r * NX + p] += d3_hsum(d3_widen(wv[r]) * xv);                     \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
}
D3_DOT(1, 1)
D3_DOT(1, 2)
D3_DOT(1, 4)
D3_DOT(8, 1)
D3_DOT(8, 2)
D3_DOT(8, 4)

// The pairs (t, j) of rows [r0, r0 + rows) routed to expert e, in order: pair index into pr, its x row into xr
// (xDiv: token t, else the pair itself). At most one pair a token goes to an expert, so NX >= rows bounds the count.
#define D3_PAIRS(NX)                                                                                                 \
inline int d3_pairs_n##NX(__global const int* ids, int r0, int rows, int k, int e, int* pr, int* xr, int xDiv) {   \
    int np = 0;                                                                                                    \
    for (int p = r0 * k; p < (r0 + rows) * k; p++) {                                                               \
        if (ids[p] == e && np < NX) {                                                                              \
            for (int s = 0; s < NX; s++) {                                                                         \
                if (s == np) { pr[s] = p; xr[s] = xDiv ? p / k : p; }                                              \
            }                                                                                                      \
            np++;                                                                                                  \
        }                                                                                                          \
    }                                                                                                              \
    return np;                                                                                                     \
}
D3_PAIRS(1)
D3_PAIRS(8)

// The expert of the launch's pair slot `slot` (of rows * k), or -1 where an earlier slot holds the same expert (that
// slot's groups do the expert's work for every pair): the v3 expert launches run over the chosen slots, not over all
// E experts, so at batch 1 a launch is k experts' groups with no idle ones.
inline int d3_slot_expert(__global const int* ids, int r0, int k, int slot) {
    int e = ids[r0 * k + slot];
    for (int s = 0; s < slot; s++) if (ids[r0 * k + s] == e) return -1;
    return e;
}

// Stores acc[r * NX + p] (lane totals) as y[p, row0 + r] by lane p: pr (if any) maps p to the output row.
#define D3_STORE(NX, RR, COND, ADDR, VAL)                                                                            \
    for (int r = 0; r < RR; r++)                                                                                   \
        for (int p = 0; p < NX; p++)                                                                               \
            if (lane == p && p < np && (COND)) ADDR = VAL;

// ---- products -----------------------------------------------------------------------------------------------------

// As matvec2_bf16v: y[t, row] = W[row] . x[t] for t < n (n <= NX), W at element wOff, x and y at xOff, yOff.
// Each lane group RR rows (rows (group * WG + lane group) * RR + r). Launch: global = ceil(out / (WG * RR)) * NT.
#define D3_MATVEC(NX, RR)                                                                                            \
__kernel void d3_matvec_n##NX##_r##RR(__global const ushort* restrict w, long wOff, __global const float* restrict x,\
                                      long xOff, __global float* restrict y, long yOff, int n, int in, int out) {  \
    __local float scratch[NT];                                                                                     \
    int tid = get_local_id(0), lane = tid % WL, row0 = (get_group_id(0) * WG + tid / WL) * RR;                    \
    float acc[RR * NX];                                                                                            \
    int xr[NX];                                                                                                    \
    for (int c = 0; c < RR * NX; c++) acc[c] = 0.0f;                                                               \
    for (int p = 0; p < NX; p++) xr[p] = p;                                                                        \
    int np = n;                                                                                                    \
    __global const ushort* wp[RR];                                                                                 \
    for (int r = 0; r < RR; r++) wp[r] = w + wOff + (long) min(row0 + r, out - 1) * in;                           \
    if (row0 < out) d3_dot_n##NX##_r##RR(wp, x + xOff, in, xr, np, lane, acc);                                    \
    D3_LANE_TOTALS(acc, RR * NX, scratch)                                                                          \
    D3_STORE(NX, RR, row0 + r < out, y[yOff + (long) p * out + row0 + r], acc[r * NX + p])                         \
}

// As moe_down2_bf16v: out[pr, row] = W2_e[row] . act[pr] for the pairs of rows [r0, r0 + rows) routed to expert e,
// W2 stacked [E, hidden, inter]. Group (slot, row block) over the rows * k pair slots (d3_slot_expert).
// Launch: global = rows * k * ceil(hidden / (WG * RR)) * NT.
#define D3_DOWN(NX, RR)                                                                                              \
__kernel void d3_down_n##NX##_r##RR(__global const ushort* restrict w2, __global const float* restrict act,          \
                                    __global const int* ids, __global float* restrict out, int r0, int rows, int k,\
                                    int inter, int hidden) {                                                       \
    __local float scratch[NT];                                                                                     \
    int blocks = (hidden + WG * RR - 1) / (WG * RR);                                                               \
    int e = d3_slot_expert(ids, r0, k, get_group_id(0) / blocks);                                                  \
    if (e < 0) return;                                                                                             \
    int tid = get_local_id(0), lane = tid % WL, row0 = ((get_group_id(0) % blocks) * WG + tid / WL) * RR;          \
    int pr[NX], xr[NX];                                                                                            \
    int np = d3_pairs_n##NX(ids, r0, rows, k, e, pr, xr, 0);                                                       \
    float acc[RR * NX];                                                                                            \
    for (int c = 0; c < RR * NX; c++) acc[c] = 0.0f;                                                               \
    __global const ushort* wp[RR];                                                                                 \
    for (int r = 0; r < RR; r++) wp[r] = w2 + ((long) e * hidden + min(row0 + r, hidden - 1)) * inter;             \
    if (row0 < hidden) d3_dot_n##NX##_r##RR(wp, act, inter, xr, np, lane, acc);                                   \
    D3_LANE_TOTALS(acc, RR * NX, scratch)                                                                          \
    D3_STORE(NX, RR, row0 + r < hidden, out[(long) pr[p] * hidden + row0 + r], acc[r * NX + p])                    \
}

// As moe_gate_up2_bf16v: act[pr, row] = SiLU(W1_e[row] . x_t) * (W3_e[row] . x_t) for the pairs of rows
// [r0, r0 + rows) routed to expert e (stacked [E, inter, hidden]); a lane group streams RR rows of W1 and the same RR
// of W3 together (2 * RR row streams). Group (slot, row block) as d3_down.
// Launch: global = rows * k * ceil(inter / (WG * RR)) * NT.
#define D3_GATE_UP(NX, RR, RR2)                                                                                      \
__kernel void d3_gate_up_n##NX##_r##RR(__global const ushort* restrict w1, __global const ushort* restrict w3,      \
                                       __global const float* restrict x, __global const int* ids,                  \
                                       __global float* restrict act, int r0, int rows, int k, int inter,           \
                                       int hidden) {                                                               \
    __local float scratch[NT];                                                                                     \
    int blocks = (inter + WG * RR - 1) / (WG * RR);                                                                \
    int e = d3_slot_expert(ids, r0, k, get_group_id(0) / blocks);                                                  \
    if (e < 0) return;                                                                                             \
    int tid = get_local_id(0), lane = tid % WL, row0 = ((get_group_id(0) % blocks) * WG + tid / WL) * RR;          \
    int pr[NX], xr[NX];                                                                                            \
    int np = d3_pairs_n##NX(ids, r0, rows, k, e, pr, xr, 1);                                                       \
    float acc[RR2 * NX];                                                                                           \
    for (int c = 0; c < RR2 * NX; c++) acc[c] = 0.0f;                                                              \
    __global const ushort* wp[RR2];                                                                                \
    for (int r = 0; r < RR; r++) {                                                                                 \
        long wr = ((long) e * inter + min(row0 + r, inter - 1)) * hidden;                                          \
        wp[r] = w1 + wr;                                                                                           \
        wp[RR + r] = w3 + wr;                                                                                      \
    }                                                                                                              \
    if (row0 < inter) d3_dot_n##NX##_r##RR2(wp, x, hidden, xr, np, lane, acc);                                    \
    D3_LANE_TOTALS(acc, RR2 * NX, scratch)                                                                         \
    for (int r = 0; r < RR; r++)                                                                                   \
        for (int p = 0; p < NX; p++)                                                                               \
            if (lane == p && p < np && row0 + r < inter) {                                                         \
                float gs = acc[r * NX + p], us = acc[(RR + r) * NX + p];                                           \
                act[(long) pr[p] * inter + row0 + r] = gs / (1.0f + exp(-gs)) * us;                                \
            }                                                                                                      \
}

// ---- the fused step's projections (as dec_proj2_bf16v / dec_projr2_bf16v) -------------------------------------------

#define POS(info, t) (info[MAXN + (t)])
#define CACHE_ARGS(p) __global float* p##0, __global float* p##1, __global float* p##2, __global float* p##3, \
    __global float* p##4, __global float* p##5, __global float* p##6, __global float* p##7
#define PICK8(p, t) ((t) == 0 ? p##0 : (t) == 1 ? p##1 : (t) == 2 ? p##2 : (t) == 3 ? p##3 : (t) == 4 ? p##4 \
    : (t) == 5 ? p##5 : (t) == 6 ? p##6 : p##7)
#ifdef LM_NVIDIA
#define GRID_FENCE() asm volatile("membar.gl;" ::: "memory")
#define TAIL(last) if (!(last)) return;
#else
#define GRID_FENCE() mem_fence(CLK_GLOBAL_MEM_FENCE)
#define TAIL(last)
#endif

// As resident.cl's arrive: counts this group done on *counter; true, in every work-item, in the last one.
inline int d3_arrive(volatile __global int* counter, int total, __local int* flag) {
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

inline void d3_rope_pair(__global float* r, int i, int hr, float p, __global const float* invFreq) {
    float angle = p * invFreq[i];
    float c = cos(angle), s = sin(angle);
    float x1 = r[i], x2 = r[i + hr];
    r[i] = x1 * c - x2 * s;
    r[i + hr] = x2 * c + x1 * s;
}

// weight row `row` of the launch's two or three weights (rows counted over wa, wb, wc in turn)
#define D3_PROJ_ROW(row) ((row) < outA ? wa + (long) (row) * in : (row) < outA + outB ? wb + (long) ((row) - outA) * in\
                          : wc + (long) ((row) - outA - outB) * in)

// Output rows [0, outA) from wa into ya (siluA: SiLU), the next outB from wb into yb, the next outC from wc into yc;
// with ROPE (d3_projr_*) the last group rotates q and k at each row's position and appends row t's k and v to its
// caches, as dec_projr2. Launch: global = ceil((outA + outB + outC) / (WG * RR)) * NT, local = NT.
#define D3_PROJ(NX, RR, KNAME, ROPE)                                                                                 \
__kernel void KNAME##_n##NX##_r##RR(__global const ushort* restrict wa, __global const ushort* restrict wb,          \
                                    __global const ushort* restrict wc, __global const float* restrict x,          \
                                    __global float* ya, __global float* yb, __global float* yc, int n, int in,     \
                                    int outA, int outB, int outC, int siluA, __global const int* info,             \
                                    __global const float* invFreq, int heads, int kvHeads, int dim, int hr,        \
                                    __global int* counter, CACHE_ARGS(kc), CACHE_ARGS(vc)) {                       \
    __local float scratch[NT];                                                                                     \
    __local int flag;                                                                                              \
    int tid = get_local_id(0), lane = tid % WL, row0 = (get_group_id(0) * WG + tid / WL) * RR;                     \
    int total = outA + outB + outC;                                                                                \
    float acc[RR * NX];                                                                                            \
    int xr[NX];                                                                                                    \
    for (int c = 0; c < RR * NX; c++) acc[c] = 0.0f;                                                               \
    for (int p = 0; p < NX; p++) xr[p] = p;                                                                        \
    int np = n;                                                                                                    \
    __global const ushort* wp[RR];                                                                                 \
    for (int r = 0; r < RR; r++) { int rr = min(row0 + r, total - 1); wp[r] = D3_PROJ_ROW(rr); }                 \
    if (row0 < total) d3_dot_n##NX##_r##RR(wp, x, in, xr, np, lane, acc);                                         \
    D3_LANE_TOTALS(acc, RR * NX, scratch)                                                                          \
    for (int r = 0; r < RR; r++) {                                                                                 \
        int row = row0 + r;                                                                                        \
        for (int p = 0; p < NX; p++) {                                                                             \
            if (lane == p && p < np && row < total) {                                                              \
                float v = acc[r * NX + p];                                                                         \
                if (row < outA) ya[(long) p * outA + row] = siluA ? v / (1.0f + exp(-v)) : v;                      \
                else if (row < outA + outB) yb[(long) p * outB + row - outA] = v;                                  \
                else yc[(long) p * outC + row - outA - outB] = v;                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
    if (!ROPE) return;                                                                                             \
    int last = d3_arrive(counter, get_num_groups(0), &flag);                                                       \
    TAIL(last)                                                                                                     \
    int kvd = kvHeads * dim;                                                                                       \
    for (int idx = tid; idx < (last ? n * (heads + kvHeads) * hr : 0); idx += NT) {                                \
        int i = idx % hr, hh = (idx / hr) % (heads + kvHeads), t = idx / (hr * (heads + kvHeads));                 \
        __global float* r = hh < heads ? ya + ((long) t * heads + hh) * dim : yb + (long) t * kvd + (hh - heads) * dim;\
        d3_rope_pair(r, i, hr, (float) POS(info, t), invFreq);                                                     \
    }                                                                                                              \
    barrier(CLK_GLOBAL_MEM_FENCE);                                                                                 \
    for (int idx = tid; idx < (last ? n * kvd : 0); idx += NT) {                                                   \
        int t = idx / kvd, c = idx % kvd;                                                                          \
        long at = (long) POS(info, t) * kvd + c;                                                                   \
        PICK8(kc, t)[at] = yb[idx];                                                                                \
        PICK8(vc, t)[at] = yc[idx];                                                                                \
    }                                                                                                              \
}

#define D3_FORMS(NX)                                                                                                 \
D3_MATVEC(NX, 1) D3_MATVEC(NX, 2) D3_MATVEC(NX, 4)                                                                  \
D3_DOWN(NX, 1) D3_DOWN(NX, 2) D3_DOWN(NX, 4)                                                                        \
D3_GATE_UP(NX, 1, 2) D3_GATE_UP(NX, 2, 4)                                                                           \
D3_PROJ(NX, 1, d3_proj, 0) D3_PROJ(NX, 2, d3_proj, 0) D3_PROJ(NX, 4, d3_proj, 0)                                    \
D3_PROJ(NX, 1, d3_projr, 1) D3_PROJ(NX, 2, d3_projr, 1) D3_PROJ(NX, 4, d3_projr, 1)
D3_FORMS(1)
D3_FORMS(8)

// ---- norm + router in one pass (as dec_norm_route2_bf16) ------------------------------------------------------------
// Group t: r = alpha x[t] + beta a[t]; x[t] = w * r / sqrt(mean(r^2) + eps); the router's logits x[t] . gate^T and
// top k into ids, wts. v2 takes three dependent round trips to memory (the sum of squares, the normed row written and
// read back, the logits); here every load is issued at once: the logits are inv * sum_i gate[e, i] w[i] r[i], so the
// sum of squares and the E unscaled logits are one reduction of E + 1 values. h % 8 == 0, E <= D3_MAXE.
// Launch: global = n * NT, local = NT.
// acc[e] += gate[e, i .. i + 7] . wr for e < E: the first 8 experts' loads unconditional (row clamped to E - 1, the
// sum dropped by a select), so that the compiler issues them together rather than one guarded load at a time; the
// rest (E > 8) guarded.
#define D3_LOGITS(acc, LD8, gate, E, h, i, wr)                                                                       \
    for (int e = 0; e < 8; e++) {                                                                                  \
        float v_ = d3_hsum(LD8(gate + (long) min(e, (E) - 1) * (h) + (i)) * (wr));                                 \
        acc[e] += e < (E) ? v_ : 0.0f;                                                                             \
    }                                                                                                              \
    for (int e = 8; e < D3_MAXE; e++) if (e < (E)) acc[e] += d3_hsum(LD8(gate + (long) e * (h) + (i)) * (wr));

#define D3_NORM_ROUTE(SUF, WT, LD8)                                                                                  \
__kernel void d3_norm_route_##SUF(__global float* x, float alpha, __global const float* a, float beta,             \
                                  __global const float* normW, float eps, int h, __global const WT* gate, int E,   \
                                  int k, __global int* ids, __global float* wts, __global int* routeLog,           \
                                  long logOff, int logIds) {                                                       \
    __local float scratch[NT];                                                                                     \
    __local float part[(D3_MAXE + 1) * WG];                                                                        \
    __local float sums[D3_MAXE + 1];                                                                               \
    __local float lg[D3_MAXE];                                                                                     \
    int tid = get_local_id(0), t = get_group_id(0), lane = tid % WL, wg = tid / WL;                                \
    __global float* xt = x + (long) t * h;                                                                         \
    __global const float* at = a + (long) t * h;                                                                   \
    float acc[D3_MAXE + 1];                                                                                        \
    for (int e = 0; e <= D3_MAXE; e++) acc[e] = 0.0f;                                                              \
    for (int i = tid * 8; i < h; i += NT * 8) {                                                                    \
        float8 r = alpha * vload8(0, xt + i) + beta * vload8(0, at + i);                                           \
        acc[D3_MAXE] += d3_hsum(r * r);                                                                            \
        float8 wr = vload8(0, normW + i) * r;                                                                      \
        D3_LOGITS(acc, LD8, gate, E, h, i, wr)                                                                     \
    }                                                                                                              \
    D3_LANE_TOTALS(acc, D3_MAXE + 1, scratch)                                                                      \
    if (lane == 0) for (int e = 0; e <= D3_MAXE; e++) part[e * WG + wg] = acc[e];                                  \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    if (tid <= D3_MAXE) {                                                                                          \
        float s = 0.0f;                                                                                            \
        for (int g = 0; g < WG; g++) s += part[tid * WG + g];                                                      \
        sums[tid] = s;                                                                                             \
    }                                                                                                              \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                  \
    float inv = 1.0f / sqrt(sums[D3_MAXE] / h + eps);                                                              \
    /* each work-item rewrites only the elements it read */                                                        \
    for (int i = tid * 8; i < h; i += NT * 8)                                                                      \
        vstore8(vload8(0, normW + i) * ((alpha * vload8(0, xt + i) + beta * vload8(0, at + i)) * inv), 0, xt + i); \
    if (tid == 0) {                                                                                                \
        for (int e = 0; e < E; e++) lg[e] = sums[e] * inv;                                                         \
        d3_top_k(lg, E, k, ids + t * k, wts + t * k);                                                              \
        if (logIds) for (int j = 0; j < k; j++) routeLog[logOff + t * k + j] = ids[t * k + j];                     \
    }                                                                                                              \
}

// As resident.cl's top_k_local: p = softmax(lg) in fp32; the top k by probability (ties to the lower id), their p
// renormalised to sum 1.
inline void d3_top_k(__local const float* lg, int E, int k, __global int* ids, __global float* wts) {
    float m = -INFINITY;
    for (int e = 0; e < E; e++) m = max(m, lg[e]);
    float sum = 0.0f;
    for (int e = 0; e < E; e++) sum += exp(lg[e] - m);
    ulong taken = 0;
    float kept = 0.0f;
    for (int j = 0; j < k; j++) {
        int best = -1;
        float bp = 0.0f;
        for (int e = 0; e < E; e++) {
            if ((taken >> e) & 1UL) continue;
            float p = exp(lg[e] - m) / sum;
            if (best < 0 || p > bp) { best = e; bp = p; }
        }
        taken |= 1UL << best;
        ids[j] = best;
        wts[j] = bp;
        kept += bp;
    }
    for (int j = 0; j < k; j++) wts[j] /= kept;
}

#define D3_LD8_BF16(p) d3_widen(vload4(0, (__global const uint*) (p)))
#define D3_LD8_F32(p) vload8(0, p)
D3_NORM_ROUTE(bf16, ushort, D3_LD8_BF16)
D3_NORM_ROUTE(f32, float, D3_LD8_F32)

#ifndef D3_NO_FUSED  // the fused forms below: left out by the build's fallback where a compiler rejects them
// ---- tails: the norm and the router in the product launch before them (-Dlightmesh.decode.v3.tails) -------------------
// The last group of a product launch (d3_arrive) does the work that needs the whole output. At one row the whole group
// works on it (8-element chunks tid * 8, tid * 8 + NT * 8, ...: one pass at 2048); at more, one lane group a row (n <=
// MAXN = WG; chunks lane * 8, lane * 8 + WL * 8, ...). A work-item rewrites only what it read. Groups other than the
// last leave at the tail on NVIDIA (TAIL); elsewhere they run it with empty loops, so that every barrier is taken by
// the whole group.

// The sums of acc[c < CNT] over the work-items of each tail row (tpr of them: NT or WL), back into acc. part: WG * CNT
// floats of local memory. Every work-item of the group calls it.
#define D3_ROW_TOTALS(acc, CNT, tpr, scratch, part)                                                                 \
    {                                                                                                              \
        D3_LANE_TOTALS(acc, CNT, scratch)                                                                          \
        int wg_ = get_local_id(0) / WL;                                                                            \
        if (get_local_id(0) % WL == 0) for (int c_ = 0; c_ < (CNT); c_++) part[wg_ * (CNT) + c_] = acc[c_];        \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                              \
        int g0_ = (tpr) == NT ? 0 : wg_, gn_ = (tpr) == NT ? WG : 1;                                               \
        for (int c_ = 0; c_ < (CNT); c_++) {                                                                       \
            float v_ = 0.0f;                                                                                       \
            for (int g_ = 0; g_ < WG; g_++) if (g_ >= g0_ && g_ < g0_ + gn_) v_ += part[g_ * (CNT) + c_];          \
            acc[c_] = v_;                                                                                          \
        }                                                                                                          \
    }

// Row t's residual, norm and router as d3_norm_route, by the tail row's tpr work-items (idx: this one's index among
// them; lim 0 for idle ones). lgs: this row's D3_MAXE floats of local memory; part: WG * (D3_MAXE + 1).
#define D3_ROUTE_ROW(SUF, WT, LD8)                                                                                   \
inline void d3_route_row_##SUF(__global float* xt, float alpha, __global const float* at, float beta,              \
                               __global const float* normW, float eps, int h, int lim, int tpr, int idx,           \
                               __global const WT* gate, int E, int k, __global int* idt, __global float* wtt,      \
                               __global int* logt, int logIds, __local float* scratch, __local float* part,        \
                               __local float* lgs) {                                                               \
    float acc[D3_MAXE + 1];                                                                                        \
    for (int e = 0; e <= D3_MAXE; e++) acc[e] = 0.0f;                                                              \
    for (int i = idx * 8; i < lim; i += tpr * 8) {                                                                 \
        float8 r = alpha * vload8(0, xt + i) + beta * vload8(0, at + i);                                           \
        acc[D3_MAXE] += d3_hsum(r * r);                                                                            \
        float8 wr = vload8(0, normW + i) * r;                                                                      \
        D3_LOGITS(acc, LD8, gate, E, h, i, wr)                                                                     \
    }                                                                                                              \
    D3_ROW_TOTALS(acc, D3_MAXE + 1, tpr, scratch, part)                                                            \
    float inv = 1.0f / sqrt(acc[D3_MAXE] / h + eps);                                                               \
    for (int i = idx * 8; i < lim; i += tpr * 8)                                                                   \
        vstore8(vload8(0, normW + i) * ((alpha * vload8(0, xt + i) + beta * vload8(0, at + i)) * inv), 0, xt + i); \
    if (idx == 0 && lim > 0) {                                                                                     \
        for (int e = 0; e < D3_MAXE; e++) if (e < E) lgs[e] = acc[e] * inv;                                        \
        d3_top_k(lgs, E, k, idt, wtt);                                                                             \
        if (logIds) for (int j = 0; j < k; j++) logt[j] = idt[j];                                                  \
    }                                                                                                              \
}
D3_ROUTE_ROW(bf16, ushort, D3_LD8_BF16)
D3_ROUTE_ROW(f32, float, D3_LD8_F32)

// The tail's geometry for n rows: tpr work-items a row (NT at one row, else WL), this work-item's row t (clamped into
// [0, n)) and index idx among its row's, and lim (h for a live row of the last group, else 0).
#define D3_TAIL_ROWS(n, h, last)                                                                                     \
    int tpr = (n) == 1 ? NT : WL;                                                                                  \
    int tRow = get_local_id(0) / tpr, idx = get_local_id(0) % tpr;                                                 \
    int lim = (last) && tRow < (n) ? (h) : 0;                                                                      \
    tRow = min(tRow, (n) - 1);

// The output projection a = o W^T (as d3_matvec, W bf16 [out, in]) and, in the last group, every row's residual, norm
// and router (as d3_norm_route; the router's weights bf16 or f32: SUF): matvec2 + dec_norm_route2 in one launch.
// h = out, h % 8 == 0, E <= D3_MAXE, counter zero between launches. Launch: global = ceil(out / (WG * RR)) * NT.
#define D3_OUT_ROUTE(NX, RR, SUF, WT)                                                                                \
__kernel void d3_out_route_##SUF##_n##NX##_r##RR(__global const ushort* restrict w, __global const float* restrict o,\
        __global float* a, int n, int in, int out, __global float* x, float alpha, float beta,                     \
        __global const float* normW, float eps, __global const WT* gate, int E, int k, __global int* ids,          \
        __global float* wts, __global int* routeLog, long logOff, int logIds, __global int* counter) {             \
    __local float scratch[NT];                                                                                     \
    __local float part[WG * (D3_MAXE + 1)];                                                                        \
    __local float lgs[WG * D3_MAXE];                                                                               \
    __local int flag;                                                                                              \
    int tid = get_local_id(0), lane = tid % WL, wg = tid / WL, row0 = (get_group_id(0) * WG + wg) * RR;           \
    float acc[RR * NX];                                                                                            \
    int xr[NX];                                                                                                    \
    for (int c = 0; c < RR * NX; c++) acc[c] = 0.0f;                                                               \
    for (int p = 0; p < NX; p++) xr[p] = p;                                                                        \
    int np = n;                                                                                                    \
    __global const ushort* wp[RR];                                                                                 \
    for (int r = 0; r < RR; r++) wp[r] = w + (long) min(row0 + r, out - 1) * in;                                  \
    if (row0 < out) d3_dot_n##NX##_r##RR(wp, o, in, xr, np, lane, acc);                                           \
    D3_LANE_TOTALS(acc, RR * NX, scratch)                                                                          \
    D3_STORE(NX, RR, row0 + r < out, a[(long) p * out + row0 + r], acc[r * NX + p])                                \
    int last = d3_arrive(counter, get_num_groups(0), &flag);                                                       \
    TAIL(last)                                                                                                     \
    D3_TAIL_ROWS(n, out, last)                                                                                     \
    d3_route_row_##SUF(x + (long) tRow * out, alpha, a + (long) tRow * out, beta, normW, eps, out, lim, tpr, idx,  \
                       gate, E, k, ids + tRow * k, wts + tRow * k, routeLog + logOff + tRow * k, logIds, scratch,  \
                       part, lgs + tRow * D3_MAXE);                                                                \
}

// The experts' down projection (as d3_down) and, in the last group, the MoE residual with the next norm of every row
// (as residual_norm2 with the router's weights): x[t] = w * r / sqrt(mean(r^2) + eps), r = alpha x[t] + beta
// sum_j wts[t, j] out[t * k + j]: moe_down2 + residual_norm2 in one launch. Every group counts itself (slots that
// repeat an expert skip the product, not the count). hidden % 8 == 0, counter zero between launches.
// Launch: global = rows * k * ceil(hidden / (WG * RR)) * NT (r0 = 0, rows = n).
#define D3_DOWN_NORM(NX, RR)                                                                                         \
__kernel void d3_down_norm_n##NX##_r##RR(__global const ushort* restrict w2, __global const float* restrict act,     \
        __global const int* ids, __global float* out, int r0, int rows, int k, int inter, int hidden,              \
        __global float* x, float alpha, float beta, __global const float* wts, __global const float* normW,        \
        float eps, __global int* counter) {                                                                        \
    __local float scratch[NT];                                                                                     \
    __local float part[WG];                                                                                        \
    __local int flag;                                                                                              \
    int blocks = (hidden + WG * RR - 1) / (WG * RR);                                                               \
    int e = d3_slot_expert(ids, r0, k, get_group_id(0) / blocks);                                                  \
    int tid = get_local_id(0), lane = tid % WL, wg = tid / WL;                                                     \
    int row0 = e < 0 ? hidden : ((get_group_id(0) % blocks) * WG + wg) * RR;                                       \
    int pr[NX], xr[NX];                                                                                            \
    int np = e < 0 ? 0 : d3_pairs_n##NX(ids, r0, rows, k, e, pr, xr, 0);                                           \
    float acc[RR * NX];                                                                                            \
    for (int c = 0; c < RR * NX; c++) acc[c] = 0.0f;                                                               \
    __global const ushort* wp[RR];                                                                                 \
    for (int r = 0; r < RR; r++) wp[r] = w2 + ((long) max(e, 0) * hidden + min(row0 + r, hidden - 1)) * inter;     \
    if (row0 < hidden) d3_dot_n##NX##_r##RR(wp, act, inter, xr, np, lane, acc);                                   \
    D3_LANE_TOTALS(acc, RR * NX, scratch)                                                                          \
    D3_STORE(NX, RR, row0 + r < hidden, out[(long) pr[p] * hidden + row0 + r], acc[r * NX + p])                    \
    int last = d3_arrive(counter, get_num_groups(0), &flag);                                                       \
    TAIL(last)                                                                                                     \
    D3_TAIL_ROWS(rows, hidden, last)                                                                               \
    __global float* xt = x + (long) (r0 + tRow) * hidden;                                                          \
    __global const float* ut = out + (long) (r0 + tRow) * k * hidden;                                              \
    __global const float* wt = wts + (r0 + tRow) * k;                                                              \
    float ss[1] = {0.0f};                                                                                          \
    for (int i = idx * 8; i < lim; i += tpr * 8) {                                                                 \
        float8 u = 0.0f;                                                                                           \
        for (int j = 0; j < k; j++) u += wt[j] * vload8(0, ut + (long) j * hidden + i);                            \
        float8 r = alpha * vload8(0, xt + i) + beta * u;                                                           \
        ss[0] += d3_hsum(r * r);                                                                                   \
    }                                                                                                              \
    D3_ROW_TOTALS(ss, 1, tpr, scratch, part)                                                                       \
    float inv = 1.0f / sqrt(ss[0] / hidden + eps);                                                                 \
    for (int i = idx * 8; i < lim; i += tpr * 8) {                                                                 \
        float8 u = 0.0f;                                                                                           \
        for (int j = 0; j < k; j++) u += wt[j] * vload8(0, ut + (long) j * hidden + i);                            \
        vstore8(vload8(0, normW + i) * ((alpha * vload8(0, xt + i) + beta * u) * inv), 0, xt + i);                 \
    }                                                                                                              \
}

#define D3_TAIL_FORMS(NX)                                                                                            \
D3_OUT_ROUTE(NX, 1, bf16, ushort) D3_OUT_ROUTE(NX, 2, bf16, ushort) D3_OUT_ROUTE(NX, 4, bf16, ushort)               \
D3_OUT_ROUTE(NX, 1, f32, float) D3_OUT_ROUTE(NX, 2, f32, float) D3_OUT_ROUTE(NX, 4, f32, float)                     \
D3_DOWN_NORM(NX, 1) D3_DOWN_NORM(NX, 2) D3_DOWN_NORM(NX, 4)
D3_TAIL_FORMS(1)
D3_TAIL_FORMS(8)

// ---- a lightning layer in one launch at one row (-Dlightmesh.decode.v3.lightning) --------------------------------------
// d3_proj_light_n1_r*: the projections qkv = SiLU(x W_qkv^T) [3HD] and gate = x W_gate^T [HD] (as d3_proj), then, in the
// last group of each head's qkv rows (counters[h]), that head's lightning step (as dec_lightning2: S = ratio S + k^T v,
// o_h = q S, the row's state at its pool slot), then in the last group of the launch (counters[heads]) the norm and the
// gate: o = RMSNorm_w(o) * sigmoid(gate): dec_proj2 + dec_lightning2 in one launch. One row (n = 1), D % 4 == 0,
// D / 4 <= NT, H * D % 8 == 0; counters zero between launches. Launch: global = ceil(4 * H * D / (WG * RR)) * NT.

#define SLOT(info, t) (info[2 * MAXN + (t)])

// Head h's step by the whole group: work-item (slice, c4) keeps columns 4 c4 .. 4 c4 + 3 of rows slice, slice + slices,
// ... (slices = NT / (D / 4): 8 at D = 128, 16 rows a work-item, every load of the state in flight at once), its part
// of o_h summed over the slices through opart (NT * 4 floats). live: whether this group is the head's last (else every
// loop is empty; the barriers are taken either way).
inline void d3_light_head(__global const float* q, __global const float* k, __global const float* v, __global float* s,
                          float ratio, int dim, int live, __global float* oh, __local float* opart) {
    int tid = get_local_id(0), cols4 = dim / 4, slices = NT / cols4;
    int c4 = tid % cols4, slice = tid / cols4;
    int rows = live && slice < slices ? dim : 0;
    float4 vj = live ? vload4(c4, v) : (float4) 0.0f;
    float4 acc = 0.0f;
    for (int i = slice; i < rows; i += 8 * slices) {
        float4 sv[8];
        for (int u = 0; u < 8; u++) {
            int r = i + u * slices;
            sv[u] = r < rows ? vload4(c4, s + (long) r * dim) : (float4) 0.0f;
        }
        for (int u = 0; u < 8; u++) {
            int r = i + u * slices;
            if (r < rows) {
                float4 sij = ratio * sv[u] + k[r] * vj;
                vstore4(sij, c4, s + (long) r * dim);
                acc += q[r] * sij;
            }
        }
    }
    if (slice < slices) vstore4(acc, c4, opart + slice * dim);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int j = tid; j < (live ? dim : 0); j += NT) {
        float sum = 0.0f;
        for (int sl = 0; sl < slices; sl++) sum += opart[sl * dim + j];
        oh[j] = sum;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

#define D3_PROJ_LIGHT(RR)                                                                                            \
__kernel void d3_proj_light_n1_r##RR(__global const ushort* restrict wa, __global const ushort* restrict wb,         \
        __global const float* restrict x, __global float* qkv, __global float* gate, int in, int heads, int dim,   \
        __global const float* decay, __global float* pool, long stride, int layer, int layers,                     \
        __global const int* info, __global float* o, __global const float* normW, float eps,                       \
        __global int* counters) {                                                                                  \
    __local float scratch[NT];                                                                                     \
    __local float opart[NT * 4];                                                                                   \
    __local float part[WG];                                                                                        \
    __local int flag;                                                                                              \
    int tid = get_local_id(0), lane = tid % WL, wg = tid / WL, gr = WG * RR;                                       \
    int hd = heads * dim, outA = 3 * hd, total = 4 * hd, row0 = (get_group_id(0) * WG + wg) * RR;                  \
    float acc[RR];                                                                                                 \
    int xr[1] = {0};                                                                                               \
    for (int c = 0; c < RR; c++) acc[c] = 0.0f;                                                                    \
    int np = 1;                                                                                                    \
    __global const ushort* wp[RR];                                                                                 \
    for (int r = 0; r < RR; r++) {                                                                                 \
        int rr = min(row0 + r, total - 1);                                                                         \
        wp[r] = rr < outA ? wa + (long) rr * in : wb + (long) (rr - outA) * in;                                    \
    }                                                                                                              \
    if (row0 < total) d3_dot_n1_r##RR(wp, x, in, xr, np, lane, acc);                                              \
    D3_LANE_TOTALS(acc, RR, scratch)                                                                               \
    for (int r = 0; r < RR; r++) {                                                                                 \
        int row = row0 + r;                                                                                        \
        if (lane == 0 && row < total) {                                                                            \
            float v = acc[r];                                                                                      \
            if (row < outA) qkv[row] = v / (1.0f + exp(-v));                                                       \
            else gate[row - outA] = v;                                                                             \
        }                                                                                                          \
    }                                                                                                              \
    /* the heads whose qkv rows this group holds: each counts its groups; its last runs the head's step */         \
    int lo = get_group_id(0) * gr, hi = min(lo + gr, outA) - 1, per = 3 * dim;                                     \
    int hLo = lo / per, hHi = lo < outA ? hi / per : hLo - 1;                                                      \
    __global float* st = pool + ((long) SLOT(info, 0) * layers + layer) * stride;                                  \
    for (int h = hLo; h <= hHi; h++) {                                                                             \
        int groups = ((h + 1) * per - 1) / gr - (h * per) / gr + 1;                                                \
        int live = d3_arrive(counters + h, groups, &flag);                                                         \
        __global const float* q = qkv + (long) h * per;                                                            \
        d3_light_head(q, q + dim, q + 2 * dim, st + (long) h * dim * dim, exp(-decay[h]), dim, live,               \
                      o + (long) h * dim, opart);                                                                  \
    }                                                                                                              \
    int last = d3_arrive(counters + heads, get_num_groups(0), &flag);                                              \
    TAIL(last)                                                                                                     \
    int lim = last ? hd : 0;                                                                                       \
    float ss[1] = {0.0f};                                                                                          \
    for (int i = tid * 8; i < lim; i += NT * 8) { float8 s = vload8(0, o + i); ss[0] += d3_hsum(s * s); }          \
    D3_ROW_TOTALS(ss, 1, NT, scratch, part)                                                                        \
    float inv = 1.0f / sqrt(ss[0] / hd + eps);                                                                     \
    for (int i = tid * 8; i < lim; i += NT * 8) {                                                                  \
        float8 g = vload8(0, gate + i);                                                                            \
        vstore8((vload8(0, normW + i) * (vload8(0, o + i) * inv)) * (1.0f / (1.0f + exp(-g))), 0, o + i);          \
    }                                                                                                              \
}
D3_PROJ_LIGHT(1)
D3_PROJ_LIGHT(2)
D3_PROJ_LIGHT(4)
#endif  // D3_NO_FUSED
