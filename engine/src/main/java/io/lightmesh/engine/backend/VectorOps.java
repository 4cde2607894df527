package io.lightmesh.engine.backend;

import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import static io.lightmesh.engine.backend.DenseKernels.gemm;
import static io.lightmesh.engine.backend.DenseKernels.roundUp;

/**
 * The Panama Vector API backend: the kernels of {@link WeightKernels} and {@link DenseKernels} spread over a fixed
 * {@link WorkerPool} of all cores. This class owns the partitioning (which rows, heads or query tiles a task takes)
 * and per-thread scratch; the math is in the kernels, and {@link ReferenceOps} is what it is tested against.
 *
 * <ul>
 *   <li>matmul, few tokens (decode): each task streams a contiguous range of weight rows once from the mapped
 *       checkpoint, widening bf16/f16 in registers; memory-bound, so the aim is streaming bandwidth.</li>
 *   <li>matmul, many tokens (prefill): a task widens a cache-sized tile of weight rows to fp32 once, transposed,
 *       then runs a 4 tokens x 64 rows broadcast-FMA register tile over L2-sized token chunks; compute-bound.</li>
 *   <li>lightning prefill: one task per head, Lightning Attention-2 blocks as small matrix products.</li>
 *   <li>lightning decode: one task per (sequence, head).</li>
 *   <li>softmax attention: one task per (kv head, query tile), all heads of a GQA group together, online softmax
 *       over key blocks (flash-attention style), so memory stays O(tile) whatever the length.</li>
 * </ul>
 */
public final class VectorOps implements TensorOps {
    private static final int L = WeightKernels.L;
    /**
     * At or above this many tokens matmul switches from row streaming (about 40 GFLOP/s a core, flat in n) to the
     * transposed register tile (its one-off transpose pays for itself from about 24 tokens: 50 GFLOP/s at 32,
     * 90 at 512, measured on the 2-core Zen 4 box).
     */
    static final int TILED_MIN_TOKENS = Integer.getInteger("lightmesh.vector.tiledMinTokens", 24);
    /** Below this many multiply-adds a call runs on the caller's thread alone. */
    private static final long PARALLEL_MIN_WORK = 1 << 15;
    /** Bytes of fp32 weights and of activations a prefill matmul task keeps hot (L2 is 1 MiB a core here). */
    private static final int TILE_BYTES = 192 * 1024;
    /** Softmax attention: keys per block and query rows (queries x group heads) per task. */
    /** Query rows from which a softmax tile keeps its scores transposed (vectorised along rows). */
    private static final int TRANSPOSED_MIN_ROWS = Integer.getInteger("lightmesh.vector.transposedMinRows", 2 * L);
    private static final int KEY_BLOCK = Integer.getInteger("lightmesh.vector.keyBlock", 128), QUERY_ROWS = Integer.getInteger("lightmesh.vector.queryRows", 256);

    private final WorkerPool pool;
    private final ThreadLocal<Scratch> scratch = ThreadLocal.withInitial(Scratch::new);

    /** One thread per available core. */
    public VectorOps() { this(Runtime.getRuntime().availableProcessors()); }

    /** {@code threads} counts the calling thread; 1 runs everything on the caller. */
    public VectorOps(int threads) { this.pool = new WorkerPool(threads, "lightmesh-vector"); }

    @Override
    public String name() { return "vector"; }

    public int threads() { return pool.threads(); }

    /** Vector width in fp32 lanes (16 with AVX-512). */
    public static int lanes() { return L; }

    @Override
    public void close() { pool.close(); }

    // ---------------------------------------------------------------------------------------------------- matmul

    @Override
    public void matmul(float[] x, int n, Tensor w, float[] y) {
        if (w.rank() != 2) throw new IllegalArgumentException("matmul weight " + w + " is not 2-D");
        int out = Math.toIntExact(w.dim(0)), in = Math.toIntExact(w.dim(1));
        if (x.length < n * in || y.length < n * out) {
            throw new IllegalArgumentException("matmul " + w + ": x holds " + x.length + " (need " + n * in + "), y holds "
                    + y.length + " (need " + n * out + ")");
        }
        if (n <= 0 || out == 0) return;
        if (n >= TILED_MIN_TOKENS) matmulTiled(x, n, w, y, out, in);
        else matmulStreaming(x, n, w, y, out, in);
    }

    /** Decode and small batches: each weight row is read once from memory and dotted with every token. */
    private void matmulStreaming(float[] x, int n, Tensor w, float[] y, int out, int in) {
        long work = (long) out * in * n;
        int tasks = work < PARALLEL_MIN_WORK ? 1 : Math.min(out, pool.threads() * 4);
        int per = (out + tasks - 1) / tasks;
        tasks = (out + per - 1) / per;
        MemorySegment seg = w.data();
        DType dtype = w.dtype();
        pool.run(tasks, task -> {
            int o0 = task * per, o1 = Math.min(out, o0 + per);
            if (n == 1) dotRows(dtype, seg, x, in, y, o0, o1);
            else dotRows4(dtype, seg, x, n, in, out, y, o0, o1, scratch.get().r16);
        });
    }

    private static void dotRows(DType dtype, MemorySegment seg, float[] x, int in, float[] y, int o0, int o1) {
        switch (dtype) {
            case F32 -> { for (int o = o0; o < o1; o++) y[o] = WeightKernels.dotF32(seg, (long) o * in, x, 0, in); }
            case BF16 -> { for (int o = o0; o < o1; o++) y[o] = WeightKernels.dotBf16(seg, (long) o * in, x, 0, in); }
            case F16 -> { for (int o = o0; o < o1; o++) y[o] = WeightKernels.dotF16(seg, (long) o * in, x, 0, in); }
        }
    }

    private static void dotRows4(DType dtype, MemorySegment seg, float[] x, int n, int in, int out, float[] y,
                                 int o0, int o1, float[] r) {
        for (int o = o0; o < o1; o++) {
            long row = (long) o * in;
            for (int t = 0; t < n; t += 4) {
                int x0 = t * in, x1 = Math.min(t + 1, n - 1) * in, x2 = Math.min(t + 2, n - 1) * in, x3 = Math.min(t + 3, n - 1) * in;
                switch (dtype) {
                    case F32 -> WeightKernels.dot4F32(seg, row, x, x0, x1, x2, x3, in, r);
                    case BF16 -> WeightKernels.dot4Bf16(seg, row, x, x0, x1, x2, x3, in, r);
                    case F16 -> WeightKernels.dot4F16(seg, row, x, x0, x1, x2, x3, in, r);
                }
                for (int j = 0; j < 4 && t + j < n; j++) y[(t + j) * out + o] = r[j];
            }
        }
    }

    /**
     * Prefill: a task widens its tile of weight rows once, transposed to W^T [in, rows] in fp32, then computes
     * y[tokens, rows] = x[tokens, in] . W^T over L2-sized token chunks with the broadcast-FMA register tile of
     * {@link DenseKernels#gemm} (4 tokens x 64 rows in registers, no horizontal sums).
     */
    private void matmulTiled(float[] x, int n, Tensor w, float[] y, int out, int in) {
        int rowsFit = Math.max(4 * L, TILE_BYTES / (4 * in) / (4 * L) * (4 * L));
        int rowsBalanced = roundUp((out + pool.threads() * 4 - 1) / (pool.threads() * 4), 4 * L);
        int rowsPerTask = Math.min(rowsFit, rowsBalanced);
        int tokenChunk = Math.max(4, TILE_BYTES / (4 * in) / 4 * 4);
        int tasks = (out + rowsPerTask - 1) / rowsPerTask;
        MemorySegment seg = w.data();
        DType dtype = w.dtype();
        pool.run(tasks, task -> {
            Scratch s = scratch.get();
            int r0 = task * rowsPerTask, rows = Math.min(out - r0, rowsPerTask);
            float[] wt = s.get(Scratch.WEIGHTS, rows * in), strip = s.get(Scratch.ROW, L * in);
            for (int rb = 0; rb < rows; rb += L) {
                int rn = Math.min(L, rows - rb);
                WeightKernels.toFloats(seg, dtype, (long) (r0 + rb) * in, strip, 0, rn * in);
                if (rn == L) WeightKernels.transposeStrip(strip, in, wt, rows, rb);
                else for (int r = 0; r < rn; r++) for (int i = 0; i < in; i++) wt[i * rows + rb + r] = strip[r * in + i];
            }
            for (int t0 = 0; t0 < n; t0 += tokenChunk) {
                int tn = Math.min(tokenChunk, n - t0);
                gemm(x, t0 * in, in, wt, 0, rows, y, t0 * out + r0, out, tn, rows, in, false);
            }
        });
    }

    // ------------------------------------------------------------------------------------------ lightning attention

    @Override
    public void lightningPrefill(float[] q, float[] k, float[] v, int n, int heads, int headDim, float[] decay,
                                 int blockSize, float[] state, float[] out) {
        if (n <= 0) return;
        pool.run(heads, h -> lightningPrefillHead(q, k, v, n, heads, headDim, decay[h], blockSize, state, out, h));
    }

    /**
     * One head, block by block (m rows, a and b in-block indices):
     * <pre>
     *   P = (Q K^T) * M,  M[a,b] = exp(-lambda (a-b)) for b <= a else 0
     *   O = P V + (Q * exp(-lambda (a+1))) S
     *   S = exp(-lambda m) S + (K * exp(-lambda (m-1-b)))^T V
     * </pre>
     */
    private void lightningPrefillHead(float[] q, float[] k, float[] v, int n, int heads, int D, float lambda, int B,
                                      float[] state, float[] out, int h) {
        Scratch s = scratch.get();
        int HD = heads * D, so = h * D * D, bp = roundUp(B, L);
        // rev[t] = exp(-lambda (B-1-t)) for t < B, 0 past it: exp(-lambda (a-b)) = rev[B-1-a+b], zero above the diagonal
        float[] rev = s.get(Scratch.DECAY, B + bp + L);
        Arrays.fill(rev, 0f);
        for (int t = 0; t < B; t++) rev[t] = (float) Math.exp(-lambda * (B - 1 - t));
        float[] qb = s.get(Scratch.Q, B * D), vb = s.get(Scratch.V, B * D), ob = s.get(Scratch.O, B * D);
        float[] kt = s.get(Scratch.KT, D * bp), kdt = s.get(Scratch.KDT, D * bp), p = s.get(Scratch.P, B * bp);
        for (int b0 = 0; b0 < n; b0 += B) {
            int m = Math.min(B, n - b0), mp = roundUp(m, L);
            // gather the head's rows: Q, V [m, D]; K^T and decayed K^T [D, mp], zero-padded to whole vectors
            for (int a = 0; a < m; a++) {
                int src = (b0 + a) * HD + h * D;
                System.arraycopy(q, src, qb, a * D, D);
                System.arraycopy(v, src, vb, a * D, D);
                float kd = rev[B - m + a]; // exp(-lambda (m-1-a))
                for (int i = 0; i < D; i++) {
                    float ki = k[src + i];
                    kt[i * mp + a] = ki;
                    kdt[i * mp + a] = ki * kd;
                }
            }
            for (int i = 0; i < D; i++) {
                Arrays.fill(kt, i * mp + m, i * mp + mp, 0f);
                Arrays.fill(kdt, i * mp + m, i * mp + mp, 0f);
            }
            // intra-block, causal: row tiles of 16 only compute the columns up to their diagonal
            for (int a0 = 0; a0 < m; a0 += 16) {
                int rows = Math.min(16, m - a0), cols = Math.min(mp, roundUp(a0 + rows, L));
                gemm(qb, a0 * D, D, kt, 0, mp, p, a0 * mp, mp, rows, cols, D, false);
                for (int a = a0; a < a0 + rows; a++) DenseKernels.mul(p, a * mp, rev, B - 1 - a, cols);
                gemm(p, a0 * mp, mp, vb, 0, D, ob, a0 * D, D, rows, D, a0 + rows, false);
            }
            // inter-block: (Q * exp(-lambda (a+1))) S_prev
            for (int a = 0; a < m; a++) DenseKernels.scale(qb, a * D, D, (float) Math.exp(-lambda * (a + 1)));
            gemm(qb, 0, D, state, so, D, ob, 0, D, m, D, D, true);
            // state update
            DenseKernels.scale(state, so, D * D, (float) Math.exp(-lambda * m));
            gemm(kdt, 0, mp, vb, 0, D, state, so, D, D, D, m, true);
            for (int a = 0; a < m; a++) System.arraycopy(ob, a * D, out, (b0 + a) * HD + h * D, D);
        }
    }

    @Override
    public void lightningDecode(float[] q, float[] k, float[] v, int batch, int heads, int headDim, float[] decay,
                                float[][] states, float[] out) {
        int D = headDim, HD = heads * D;
        int tasks = (long) batch * heads * D * D < PARALLEL_MIN_WORK ? 1 : batch * heads;
        pool.run(tasks, task -> {
            int from = tasks == 1 ? 0 : task, to = tasks == 1 ? batch * heads : task + 1;
            for (int sh = from; sh < to; sh++) {
                int b = sh / heads, h = sh % heads;
                lightningStep(q, k, v, b * HD + h * D, D, (float) Math.exp(-decay[h]), states[b], h * D * D, out);
            }
        });
    }

    /** S = ratio S + k^T v; o = q S for one head: columns of S in vectors, rows streamed. */
    private static void lightningStep(float[] q, float[] k, float[] v, int base, int D, float ratio, float[] S, int so,
                                      float[] out) {
        var F = WeightKernels.F;
        int j = 0;
        for (; j + L <= D; j += L) {
            FloatVector vj = FloatVector.fromArray(F, v, base + j), acc = FloatVector.zero(F);
            for (int i = 0; i < D; i++) {
                int sr = so + i * D + j;
                FloatVector sij = FloatVector.fromArray(F, S, sr).mul(ratio).add(vj.mul(k[base + i]));
                sij.intoArray(S, sr);
                acc = sij.fma(FloatVector.broadcast(F, q[base + i]), acc);
            }
            acc.intoArray(out, base + j);
        }
        for (; j < D; j++) {
            float acc = 0f, vj = v[base + j];
            for (int i = 0; i < D; i++) {
                int sr = so + i * D + j;
                float sij = ratio * S[sr] + k[base + i] * vj;
                S[sr] = sij;
                acc += q[base + i] * sij;
            }
            out[base + j] = acc;
        }
    }

    // -------------------------------------------------------------------------------------------- softmax attention

    @Override
    public void softmaxAttention(float[] q, int n, int heads, int kvHeads, int headDim, float[] kCache,
                                 float[] vCache, int start, float[] out) {
        if (n <= 0) return;
        int group = heads / kvHeads;
        int queriesPerTile = Math.max(1, QUERY_ROWS / group);
        int tiles = (n + queriesPerTile - 1) / queriesPerTile;
        pool.run(kvHeads * tiles, task -> {
            int g = task % kvHeads, q0 = task / kvHeads * queriesPerTile;
            int q1 = Math.min(n, q0 + queriesPerTile);
            if ((q1 - q0) * group >= TRANSPOSED_MIN_ROWS) attendTileTransposed(q, heads, kvHeads, headDim, kCache, vCache, start, out, g, q0, q1);
            else attendTile(q, n, heads, kvHeads, headDim, kCache, vCache, start, out, g, q0, q1);
        });
    }

    /**
     * Queries q0..q1-1 of every head of kv group g against keys 0..start+q1-1, in key blocks with an online softmax:
     * per row, running max m and sum l; each block rescales O and l by exp(m_old - m_new).
     */
    private void attendTile(float[] q, int n, int heads, int kvHeads, int D, float[] kCache, float[] vCache, int start,
                            float[] out, int g, int q0, int q1) {
        Scratch s = scratch.get();
        int group = heads / kvHeads, HD = heads * D, KVD = kvHeads * D, M = (q1 - q0) * group;
        int kp = roundUp(KEY_BLOCK, L);
        float scale = (float) (1.0 / Math.sqrt(D));
        float[] qs = s.get(Scratch.Q, M * D), o = s.get(Scratch.O, M * D);
        float[] kt = s.get(Scratch.KT, D * kp), p = s.get(Scratch.P, M * kp);
        float[] rowMax = s.get(Scratch.ROW_MAX, M), rowSum = s.get(Scratch.ROW_SUM, M);
        // rows are (query, head in group): row r is query q0 + r / group, head g * group + r % group
        for (int r = 0; r < M; r++) {
            int t = q0 + r / group, h = g * group + r % group;
            System.arraycopy(q, t * HD + h * D, qs, r * D, D);
            DenseKernels.scale(qs, r * D, D, scale);
        }
        Arrays.fill(o, 0, M * D, 0f);
        Arrays.fill(rowMax, 0, M, Float.NEGATIVE_INFINITY);
        Arrays.fill(rowSum, 0, M, 0f);
        int keys = start + q1;
        for (int j0 = 0; j0 < keys; j0 += KEY_BLOCK) {
            int kb = Math.min(KEY_BLOCK, keys - j0), kw = roundUp(kb, L);
            for (int j = 0; j < kb; j++) {
                int src = (j0 + j) * KVD + g * D;
                for (int i = 0; i < D; i++) kt[i * kw + j] = kCache[src + i];
            }
            for (int i = 0; i < D; i++) Arrays.fill(kt, i * kw + kb, i * kw + kw, 0f);
            gemm(qs, 0, D, kt, 0, kw, p, 0, kw, M, kw, D, false);
            for (int r = 0; r < M; r++) {
                int pos = start + q0 + r / group;               // causal: keys 0..pos
                int valid = Math.min(kb, pos - j0 + 1), po = r * kw;
                if (valid <= 0) {
                    Arrays.fill(p, po, po + kw, 0f);
                    continue;
                }
                float mNew = Math.max(rowMax[r], DenseKernels.max(p, po, valid));
                float corr = (float) Math.exp(rowMax[r] - mNew); // 0 for the first block (m_old = -inf)
                rowSum[r] = rowSum[r] * corr + DenseKernels.expMinusSum(p, po, valid, mNew);
                rowMax[r] = mNew;
                Arrays.fill(p, po + valid, po + kw, 0f);
                if (corr != 1f) DenseKernels.scale(o, r * D, D, corr);
            }
            gemm(p, 0, kw, vCache, j0 * KVD + g * D, KVD, o, 0, D, M, D, kb, true);
        }
        for (int r = 0; r < M; r++) {
            int t = q0 + r / group, h = g * group + r % group;
            DenseKernels.scale(o, r * D, D, 1f / rowSum[r]);
            System.arraycopy(o, r * D, out, t * HD + h * D, D);
        }
    }

    /**
     * Prefill form of {@link #attendTile}: scores kept transposed, S^T [keys, rows] = K . Q^T, so the keys are read
     * in place from the cache (no transpose per block) and the online softmax runs down the columns, vectorised
     * along the query rows; O^T [D, rows] += V^T . P^T reads V in place too. Rows are padded to whole vectors
     * (padding rows hold zero queries and are never written out).
     */
    private void attendTileTransposed(float[] q, int heads, int kvHeads, int D, float[] kCache, float[] vCache,
                                      int start, float[] out, int g, int q0, int q1) {
        Scratch s = scratch.get();
        int group = heads / kvHeads, HD = heads * D, KVD = kvHeads * D, M = (q1 - q0) * group, mp = roundUp(M, L);
        float scale = (float) (1.0 / Math.sqrt(D));
        float[] qt = s.get(Scratch.Q, D * mp), ot = s.get(Scratch.O, D * mp), st = s.get(Scratch.P, KEY_BLOCK * mp);
        float[] rowMax = s.get(Scratch.ROW_MAX, mp), rowSum = s.get(Scratch.ROW_SUM, mp), corr = s.get(Scratch.CORR, mp);
        Arrays.fill(qt, 0, D * mp, 0f);
        for (int r = 0; r < M; r++) {
            int t = q0 + r / group, h = g * group + r % group, src = t * HD + h * D;
            for (int i = 0; i < D; i++) qt[i * mp + r] = q[src + i] * scale;
        }
        Arrays.fill(ot, 0, D * mp, 0f);
        Arrays.fill(rowMax, 0, mp, Float.NEGATIVE_INFINITY);
        Arrays.fill(rowSum, 0, mp, 0f);
        int keys = start + q1;
        for (int j0 = 0; j0 < keys; j0 += KEY_BLOCK) {
            int kb = Math.min(KEY_BLOCK, keys - j0);
            gemm(kCache, j0 * KVD + g * D, KVD, qt, 0, mp, st, 0, mp, kb, mp, D, false);
            // causal: key p is seen by rows whose query position start + q0 + r / group >= p
            for (int j = Math.max(0, start + q0 + 1 - j0); j < kb; j++) {
                long firstRow = (long) (j0 + j - start - q0) * group;
                Arrays.fill(st, j * mp, j * mp + (int) Math.min(firstRow, M), Float.NEGATIVE_INFINITY);
                if (firstRow >= M) Arrays.fill(st, j * mp + M, (j + 1) * mp, Float.NEGATIVE_INFINITY);
            }
            DenseKernels.onlineSoftmaxColumns(st, kb, mp, rowMax, rowSum, corr);
            DenseKernels.scaleColumns(ot, 0, mp, D, corr, mp);
            gemm(vCache, j0 * KVD + g * D, 1, KVD, st, 0, mp, ot, 0, mp, D, mp, kb, true);
        }
        for (int r = 0; r < M; r++) {
            int t = q0 + r / group, h = g * group + r % group, dst = t * HD + h * D;
            float inv = 1f / rowSum[r];
            for (int i = 0; i < D; i++) out[dst + i] = ot[i * mp + r] * inv;
        }
    }

    /** Growable per-thread buffers, one per role, so steady-state calls allocate nothing. */
    private static final class Scratch {
        static final int WEIGHTS = 0, Q = 1, V = 2, O = 3, KT = 4, KDT = 5, P = 6, DECAY = 7, ROW_MAX = 8, ROW_SUM = 9, ROW = 10, CORR = 11;
        private final float[][] buffers = new float[12][];
        final float[] r16 = new float[16];

        float[] get(int role, int size) {
            float[] b = buffers[role];
            if (b == null || b.length < size) buffers[role] = b = new float[size];
            return b;
        }
    }
}
