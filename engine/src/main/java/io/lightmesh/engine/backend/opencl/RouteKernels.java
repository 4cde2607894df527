package io.lightmesh.engine.backend.opencl;

import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;

/**
 * The router of a prefill chunk and the grouping of its pairs by expert on the device ({@code prefill_route.cl}, a
 * program of its own): top k, per-expert counts, prefix offsets and the grouped order's tile table, so that the grouped
 * expert launches read the table from the device and a chunk's layers need no read-back of the ids and no blocking
 * write of a table. Made by {@link ResidentOps#routeKernels()} after a build and a check against {@code route} and the
 * host's table (a device that fails either keeps the host-table path). The launches go through the ResidentOps that
 * owns it (its queue, its profile).
 */
final class RouteKernels {
    /** Rows of a block (prefill_route.cl's PR_B). */
    static final int BLOCK = 64;
    /** The most experts and chosen experts a row the kernels take (PR_MAX_E, PR_MAX_K). */
    static final int MAX_EXPERTS = 64, MAX_K = 8;

    private final ResidentOps ops;
    private final MemorySegment program;
    private final Map<String, MemorySegment> kernels = new HashMap<>();

    private RouteKernels(ResidentOps ops, MemorySegment program) {
        this.ops = ops;
        this.program = program;
    }

    /**
     * The table's layout for {@code rows} rows of {@code k} pairs over {@code experts} experts: tiles [slot, first,
     * rows] * maxTiles | tokenRow [count] | pairIndex [count] | block counts [blocks, E] | block bases [blocks, E].
     */
    record Layout(int rows, int k, int experts) {
        int count() { return rows * k; }
        int blocks() { return (rows + BLOCK - 1) / BLOCK; }
        /** Every grouping fits: sum over experts of ceil(c_e / 128) <= ceil(count / 128) + E. */
        int maxTiles() { return (count() + GroupedTiles.TILE_ROWS - 1) / GroupedTiles.TILE_ROWS + experts; }
        int tokenOffset() { return 3 * maxTiles(); }
        int pairOffset() { return tokenOffset() + count(); }
        int countOffset() { return pairOffset() + count(); }
        int baseOffset() { return countOffset() + blocks() * experts; }
        long length() { return (long) baseOffset() + (long) blocks() * experts; }
    }

    /** Whether the kernels take this shape (else the caller keeps the host table). */
    static boolean fits(int experts, int k) { return experts >= 1 && experts <= MAX_EXPERTS && k >= 1 && k <= MAX_K && k <= experts; }

    /** Builds prefill_route.cl on {@code ops}'s device; throws with the compiler's log when it does not build. */
    static RouteKernels build(ResidentOps ops, MemorySegment context, MemorySegment device, String options) {
        return new RouteKernels(ops, Cl.buildProgram(context, device, ResidentOps.resource("prefill_route.cl"), options));
    }

    private MemorySegment kernel(String name) { return kernels.computeIfAbsent(name, n -> Cl.createKernel(program, n)); }

    /** ids, wts [rows, k] from logits [rows, E] as route does, and the grouped order's table into {@code table}. */
    void routeAndGroup(ResidentOps.ClBuffer logits, int rows, int experts, int k, ResidentOps.ClBuffer ids,
                       ResidentOps.ClBuffer wts, ResidentOps.ClBuffer table) {
        Layout t = new Layout(rows, k, experts);
        int blocks = t.blocks();
        ops.launchLocal(kernel("pr_route_count"), "pr_route_count", (long) blocks * BLOCK, BLOCK, logits, rows, experts,
                k, ids, wts, table, t.countOffset());
        ops.launchLocal(kernel("pr_table"), "pr_table", MAX_EXPERTS, MAX_EXPERTS, table, blocks, experts, t.maxTiles(),
                t.countOffset(), t.baseOffset());
        ops.launchLocal(kernel("pr_scatter"), "pr_scatter", (long) blocks * BLOCK, BLOCK, ids, rows, k, experts, table,
                t.tokenOffset(), t.pairOffset(), t.baseOffset());
    }

    /** x[off .. off + n) = 0 on the device. */
    void zero(ResidentOps.ClBuffer x, long off, long n) {
        if (n > 0) ops.launchLocal(kernel("pr_zero"), "pr_zero", ResidentOps.groups(n) * ResidentOps.NT, ResidentOps.NT,
                x, off, n);
    }

    /**
     * The table's first {@link Layout#countOffset()} ints as the host builds them from the router's ids [rows, k]:
     * pairs grouped by expert, then by pair index ({@link GroupedTiles}), empty tiles up to maxTiles.
     */
    static int[] hostTable(int[] ids, int rows, int k, int experts) {
        Layout t = new Layout(rows, k, experts);
        int count = t.count();
        int[] start = new int[experts + 1];
        for (int p = 0; p < count; p++) start[ids[p] + 1]++;
        for (int e = 0; e < experts; e++) start[e + 1] += start[e];
        int[] fill = java.util.Arrays.copyOf(start, experts), tokenRow = new int[count], pairIndex = new int[count];
        for (int p = 0; p < count; p++) {
            int at = fill[ids[p]]++;
            tokenRow[at] = p / k;
            pairIndex[at] = p;
        }
        int[] slot = new int[experts], first = new int[experts], rowsOf = new int[experts];
        for (int e = 0; e < experts; e++) {
            slot[e] = e;
            first[e] = start[e];
            rowsOf[e] = start[e + 1] - start[e];
        }
        GroupedTiles g = GroupedTiles.of(experts, slot, first, rowsOf, tokenRow, pairIndex, count);
        int[] out = new int[t.countOffset()];
        System.arraycopy(g.table(), 0, out, 0, 3 * g.tiles());
        System.arraycopy(tokenRow, 0, out, t.tokenOffset(), count);
        System.arraycopy(pairIndex, 0, out, t.pairOffset(), count);
        return out;
    }

    /**
     * The start-up check: a chunk of ragged length with every load shape (one expert taking every row, one taking
     * none, the rest mixed) through both kernels and {@code route}; null when ids and weights equal route's and the
     * table equals the host's, else why not.
     */
    String check() {
        int rows = 2 * BLOCK + 37, E = 8, k = 2;
        float[] logits = new float[rows * E];
        Random rnd = new Random(16);
        for (int t = 0; t < rows; t++) {
            for (int e = 0; e < E; e++) logits[t * E + e] = rnd.nextFloat() * 4 - 2;
            logits[t * E + 3] = 6f;       // expert 3 in every row: more than a tile's rows
            logits[t * E + 7] = -30f;     // expert 7 in none
        }
        Layout t = new Layout(rows, k, E);
        try (ResidentOps.ClBuffer lg = ops.floats(logits.length); ResidentOps.ClBuffer ids = ops.ints((long) rows * k);
             ResidentOps.ClBuffer wts = ops.floats((long) rows * k); ResidentOps.ClBuffer refIds = ops.ints((long) rows * k);
             ResidentOps.ClBuffer refWts = ops.floats((long) rows * k); ResidentOps.ClBuffer table = ops.ints(t.length())) {
            ops.write(lg, 0, logits, 0, logits.length);
            ops.route(lg, rows, E, k, refIds, refWts);
            routeAndGroup(lg, rows, E, k, ids, wts, table);
            int[] gotIds = new int[rows * k], wantIds = new int[rows * k], gotTable = new int[t.countOffset()];
            float[] gotW = new float[rows * k], wantW = new float[rows * k];
            ops.read(ids, gotIds, gotIds.length);
            ops.read(refIds, wantIds, wantIds.length);
            ops.read(wts, 0, gotW, 0, gotW.length);
            ops.read(refWts, 0, wantW, 0, wantW.length);
            ops.read(table, gotTable, gotTable.length);
            if (!java.util.Arrays.equals(gotIds, wantIds)) return "pr_route_count's ids differ from route's";
            for (int i = 0; i < gotW.length; i++) {
                if (!(Math.abs(gotW[i] - wantW[i]) <= 1e-6f)) return "pr_route_count's weights differ from route's at " + i;
            }
            if (!java.util.Arrays.equals(gotTable, hostTable(wantIds, rows, k, E))) return "the table differs from the host's";
            return null;
        } catch (RuntimeException e) {
            return "the check failed: " + e.getMessage();
        }
    }

    void release() {
        for (MemorySegment k : kernels.values()) Cl.releaseKernel(k);
        kernels.clear();
        Cl.releaseProgram(program);
    }
}
