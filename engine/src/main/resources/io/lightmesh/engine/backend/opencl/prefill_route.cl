// prefill_route.cl: the router of a prefill chunk and the grouping of its (row, chosen expert) pairs by expert, all on
// the device, so that the grouped expert launches (experts.cl, experts_tc.cl) take their tile table from the device
// and a whole chunk is enqueued with no read-back of the ids and no blocking write of a table per layer.
// Built as a program of its own (RouteKernels), checked against `route` (resident.cl) and the host's table at start;
// a compiler that rejects it leaves the host-table path as it was.
//
// One table per call, ints (PrefillRouteTable in RouteKernels), count = rows * k pairs, maxTiles = ceil(count / PR_M) + E:
//   [slot, first, rows] * maxTiles | tokenRow [count] | pairIndex [count] | blockCount [blocks, E] | blockBase [blocks, E]
// The first three parts are GroupedTiles' layout (experts.cl's moe_group_table writes the same): each expert's rows of
// the grouped order (by expert, then by pair index, as the host groups them) cut into tiles of at most PR_M rows, then
// tiles of 0 rows up to maxTiles, which the product kernels skip (the launches are sized for the most tiles possible).
// Three launches (blocks = ceil(rows / PR_B)):
//   pr_route_count: a block of PR_B rows a group, a row a work-item: the top k (ids, weights, as route) and the
//                   block's count of pairs per expert;
//   pr_table:       one group: each expert's start (prefix over experts), each block's base within it (prefix over
//                   blocks), the tiles;
//   pr_scatter:     a block a group: each pair's place, its expert's base in the block + the pairs of that expert before
//                   it in the block (stable, so the order is the host's).

#define PR_B 64        // rows of a block: work-items of pr_route_count and pr_scatter (RouteKernels.BLOCK)
#define PR_MAX_E 64    // experts (one ulong's bits in the top k; work-items of pr_table)
#define PR_MAX_K 8     // chosen experts a row
#define PR_M 128       // rows of a tile (GroupedTiles.TILE_ROWS)

// The top k of softmax(lg[0..E)) by probability (ties to the lower id), renormalised: route's top_k_global, step for
// step, so that ids and weights equal route's.
inline void pr_top_k(__global const float* lg, int E, int k, int* id, float* wt) {
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
        id[j] = best;
        wt[j] = bp;
        kept += bp;
    }
    for (int j = 0; j < k; j++) wt[j] /= kept;
}

// ids, wts [rows, k] from logits [rows, E]; grp[bcOff + block * E + e] = pairs of expert e in the block.
// Launch: global = blocks * PR_B, local = PR_B.
__kernel void pr_route_count(__global const float* logits, int rows, int E, int k, __global int* ids,
                             __global float* wts, __global int* grp, int bcOff) {
    __local int cnt[PR_MAX_E];
    int tid = get_local_id(0), b = get_group_id(0), t = b * PR_B + tid;
    for (int e = tid; e < E; e += PR_B) cnt[e] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (t < rows) {
        int id[PR_MAX_K];
        float wt[PR_MAX_K];
        pr_top_k(logits + (long) t * E, E, k, id, wt);
        for (int j = 0; j < k; j++) {
            ids[t * k + j] = id[j];
            wts[t * k + j] = wt[j];
            atomic_inc(&cnt[id[j]]);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = tid; e < E; e += PR_B) grp[bcOff + b * E + e] = cnt[e];
}

// The tiles [0, 3 * maxTiles) and each block's base grp[baseOff + block * E + e] from the block counts.
// Launch: global = local = PR_MAX_E; work-item e for expert e.
__kernel void pr_table(__global int* grp, int blocks, int E, int maxTiles, int bcOff, int baseOff) {
    __local int total[PR_MAX_E], start[PR_MAX_E], tstart[PR_MAX_E + 1];
    int e = get_local_id(0);
    if (e < E) {
        int s = 0;
        for (int b = 0; b < blocks; b++) s += grp[bcOff + b * E + e];
        total[e] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (e == 0) {
        int s = 0, ts = 0;
        for (int i = 0; i < E; i++) {
            start[i] = s;
            tstart[i] = ts;
            s += total[i];
            ts += (total[i] + PR_M - 1) / PR_M;
        }
        tstart[E] = ts;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (e < E) {
        int s = start[e];
        for (int b = 0; b < blocks; b++) {
            grp[baseOff + b * E + e] = s;
            s += grp[bcOff + b * E + e];
        }
        int t = tstart[e];
        for (int r = 0; r < total[e]; r += PR_M, t++) {
            grp[3 * t] = e;
            grp[3 * t + 1] = start[e] + r;
            grp[3 * t + 2] = min(PR_M, total[e] - r);
        }
    }
    for (int t = tstart[E] + e; t < maxTiles; t += PR_MAX_E) {
        grp[3 * t] = 0;
        grp[3 * t + 1] = 0;
        grp[3 * t + 2] = 0;
    }
}

// tokenRow and pairIndex of every pair (tokOff = 3 * maxTiles, pairOff = tokOff + count), in the host's order.
// Launch: global = blocks * PR_B, local = PR_B; work-item t for row t of the block.
__kernel void pr_scatter(__global const int* ids, int rows, int k, int E, __global int* grp, int tokOff, int pairOff,
                         int baseOff) {
    __local int lid[PR_B * PR_MAX_K];
    int tid = get_local_id(0), b = get_group_id(0);
    int p0 = b * PR_B * k, n = min(PR_B, rows - b * PR_B) * k;
    for (int i = tid; i < n; i += PR_B) lid[i] = ids[p0 + i];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int j = 0; j < k; j++) {
        int i = tid * k + j;
        if (i >= n) break;
        int e = lid[i], rank = 0;
        for (int q = 0; q < i; q++) rank += lid[q] == e ? 1 : 0;
        int at = grp[baseOff + b * E + e] + rank;
        grp[tokOff + at] = b * PR_B + tid;
        grp[pairOff + at] = p0 + i;
    }
}

// x[off .. off + n) = 0 (a fresh sequence's lightning states, without a blocking write of zeros from the host).
// Launch: global = ceil(n / 256) * 256, local = 256.
__kernel void pr_zero(__global float* x, long off, long n) {
    long i = get_global_id(0);
    if (i < n) x[off + i] = 0.0f;
}
