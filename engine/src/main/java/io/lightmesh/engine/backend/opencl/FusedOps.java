package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.DeviceOps.ExpertSet;
import io.lightmesh.engine.backend.FusedDecode;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;

import static io.lightmesh.engine.backend.opencl.ResidentOps.MAXN;
import static io.lightmesh.engine.backend.opencl.ResidentOps.MV_ROWS;
import static io.lightmesh.engine.backend.opencl.ResidentOps.NT;
import static io.lightmesh.engine.backend.opencl.ResidentOps.WG;
import static io.lightmesh.engine.backend.opencl.ResidentOps.ceilDiv;
import static io.lightmesh.engine.backend.opencl.ResidentOps.check;
import static io.lightmesh.engine.backend.opencl.ResidentOps.family;

/**
 * The launchers of the fused decode step (resident.cl's dec_* kernels): buffers, ranges and the tails' counters
 * live here, the math in the kernels. Each launch goes through its own kernel object per layer
 * ({@link ResidentOps#launchAt}), so that a step re-sets only the arguments that changed.
 *
 * <p>The tails' counters: int32 buffers, zero between launches (each tail resets its own): one for the projections,
 * the output and the experts' down launch each, and one per row for the lightning and attention tails.
 */
final class FusedOps implements FusedDecode {
    private final ResidentOps ops;
    private final ResidentOps.ClBuffer projCount, outCount, downCount, rowCounts, info, dummy;
    private ResidentOps.ClBuffer attnPart;
    /**
     * Whether the output and expert launches carry their tails (five launches a layer, -Dlightmesh.decode.tails=true),
     * or leave the norms and the router to launches of one group per row (seven a layer, the default). Measured on an
     * H200 (BENCHMARKS.md, 2026-12-03 h14c): the tails cost more than the launches they save; the tail code raises
     * the matrix-vector kernels' registers (dec_down_bf16v 166, dec_out_bf16v 100 per work-item), so fewer groups are
     * resident and the weight stream slows: 168 / 758 tokens/s at batch 1 / 8 against 328 / 1,320 split.
     */
    private boolean tails = "true".equalsIgnoreCase(System.getProperty("lightmesh.decode.tails", "false"));

    /**
     * The kernels of the split form's launches: v2 (lane-group matrix-vector products, group-wide sums without trees,
     * the lightning state split by rows too: resident.cl's "decode kernels v2") or v1 (-Dlightmesh.decode.kernels=v1,
     * to compare). The form with tails keeps v1's dec_out and dec_down.
     */
    private boolean v2 = ResidentOps.V2_DEFAULT;

    void kernels(boolean v2) { this.v2 = v2; }

    /** Weight rows a lane group of the v2 products (1 or 2; ResidentOps#decodeWarpRows). */
    private int warpRows = ResidentOps.WARP_ROWS_DEFAULT;

    void warpRows(int r) { warpRows = r; }

    /** dec_lightning2's row splits a head: 0 picks them from the device's size (tests force a count). */
    private int lightningSplits;

    void lightningSplits(int splits) { lightningSplits = splits; }

    private ResidentOps.ClBuffer lightPart;

    /** Chooses the tails' form or the split one (tests, benchmarks); see {@link #tails}. */
    void tails(boolean on) { tails = on; }

    boolean tails() { return tails; }

    FusedOps(ResidentOps ops) {
        this.ops = ops;
        projCount = zeros(1);
        outCount = zeros(1);
        downCount = zeros(1);
        rowCounts = zeros(MAXN);
        info = ops.ints(3 * MAXN);
        dummy = ops.floats(1);
    }

    private ResidentOps.ClBuffer zeros(int n) {
        ResidentOps.ClBuffer b = ops.ints(n);
        ops.write(b, new int[n], n);
        return b;
    }

    @Override
    public int maxRows() { return MAXN; }

    @Override
    public boolean takes(Tensor... weights) {
        DType dt = weights[0].dtype();
        for (Tensor w : weights) {
            if (w.dtype() != dt || (dt != DType.BF16 && dt != DType.F32)) return false;
        }
        return true;
    }

    @Override
    public void rows(int[] ids, int[] positions, int[] slots, int n) {
        if (n > MAXN) throw new IllegalArgumentException(n + " rows, at most " + MAXN);
        int[] all = new int[3 * MAXN];
        System.arraycopy(ids, 0, all, 0, n);
        System.arraycopy(positions, 0, all, MAXN, n);
        System.arraycopy(slots, 0, all, 2 * MAXN, n);
        synchronized (ops) {
            ops.write(info, all, all.length);
        }
    }

    @Override
    public void embedNorm(Tensor table, int n, Buffer w, float eps, Buffer x) {
        synchronized (ops) {
            ResidentOps.Weight t = ops.weight(table);
            check(x, 0, (long) n * t.cols());
            ops.launchAt(t.bf16() ? "dec_embed_norm_bf16" : "dec_embed_norm_f32", table, (long) n * NT, t.buf(), info,
                    w, eps, x, t.cols());
        }
    }

    @Override
    public void lightningProjections(Buffer x, int n, Tensor wQkv, Tensor wGate, Buffer qkv, Buffer gate) {
        synchronized (ops) {
            ResidentOps.Weight a = ops.weight(wQkv), b = ops.weight(wGate);
            proj(a, b, null, x, n, qkv, gate, dummy, true, 0, null, 0, 0, 0, 0, null, null, wQkv);
        }
    }

    @Override
    public void attentionProjections(Buffer x, int n, Tensor wq, Tensor wk, Tensor wv, Buffer q, Buffer k, Buffer v,
                                     int heads, int kvHeads, int dim, Buffer invFreq, int half, Buffer[] kCaches,
                                     Buffer[] vCaches) {
        synchronized (ops) {
            ResidentOps.Weight a = ops.weight(wq), b = ops.weight(wk), c = ops.weight(wv);
            proj(a, b, c, x, n, q, k, v, false, 1, invFreq, heads, kvHeads, dim, half, kCaches, vCaches, wq);
        }
    }

    private void proj(ResidentOps.Weight a, ResidentOps.Weight b, ResidentOps.Weight c, Buffer x, int n, Buffer ya,
                      Buffer yb, Buffer yc, boolean silu, int rope, Buffer invFreq, int heads, int kvHeads, int dim,
                      int half, Buffer[] kCaches, Buffer[] vCaches, Object site) {
        int in = a.cols(), outA = a.rows(), outB = b.rows(), outC = c == null ? 0 : c.rows();
        if (b.cols() != in || (c != null && c.cols() != in)) throw new IllegalArgumentException("products of different inputs");
        check(x, 0, (long) n * in);
        check(ya, 0, (long) n * outA);
        check(yb, 0, (long) n * outB);
        if (c != null) check(yc, 0, (long) n * outC);
        Object[] args = new Object[20 + 2 * MAXN];
        int i = 0;
        args[i++] = a.buf();
        args[i++] = b.buf();
        args[i++] = c == null ? a.buf() : c.buf();
        args[i++] = x;
        args[i++] = ya;
        args[i++] = yb;
        args[i++] = yc;
        args[i++] = n;
        args[i++] = in;
        args[i++] = outA;
        args[i++] = outB;
        args[i++] = outC;
        args[i++] = silu ? 1 : 0;
        args[i++] = info;
        args[i++] = invFreq == null ? dummy : invFreq;
        args[i++] = heads;
        args[i++] = kvHeads;
        args[i++] = dim;
        args[i++] = half;
        args[i++] = projCount;
        i = caches(args, i, kCaches, n, (long) kvHeads * dim);
        caches(args, i, vCaches, n, (long) kvHeads * dim);
        ops.streams((long) (outA + outB + outC) * in * (a.bf16() ? 2 : 4));
        String tc = ops.decodeTcKernel(rope == 1 ? "dtc_projr" : "dtc_proj", a.bf16(), in); // -Dlightmesh.decode.tc
        if (tc != null) {
            ops.launchDtcAt(tc, site, (long) ceilDiv(outA + outB + outC, DecodeTc.ROWS) * NT, args);
            return;
        }
        if (v3(a, in) && b.bf16() && (c == null || c.bf16())) {
            String k3 = ops.v3Kernel(rope == 1 ? "d3_projr" : "d3_proj", n, in);
            ops.launchAt(k3, site, (long) ceilDiv(outA + outB + outC, ResidentOps.v3GroupRows(k3)) * NT, args);
            return;
        }
        String name = (rope == 1 ? "dec_projr" : "dec_proj") + (v2 ? "2" + ResidentOps.rowsTag(warpRows) + "_" : "_")
                + family(a.bf16(), in);
        ops.launchAt(name, site, (long) ceilDiv(outA + outB + outC, v2 ? WG * warpRows : MV_ROWS) * NT, args);
    }

    /** The per-head and whole-launch counters of d3_proj_light (heads + 1, zero between launches). */
    private ResidentOps.ClBuffer lightCounts;

    @Override
    public boolean lightningLayer(Buffer x, int n, Tensor wQkv, Tensor wGate, Buffer qkv, Buffer gate, int heads, int dim,
                                  Buffer decay, Buffer pool, int layer, int layers, long stride, Buffer o, Buffer w,
                                  float eps) {
        synchronized (ops) {
            if (n != 1 || tails || !ops.v3Lightning()) return false;
            ResidentOps.Weight a = ops.weight(wQkv), b = ops.weight(wGate);
            int in = a.cols(), hd = heads * dim;
            if (!v3(a, in) || !b.bf16() || b.cols() != in || a.rows() != 3 * hd || b.rows() != hd || dim % 4 != 0
                    || dim / 4 > NT || hd % 8 != 0) return false;
            check(x, 0, in);
            check(qkv, 0, 3L * hd);
            check(gate, 0, hd);
            check(o, 0, hd);
            if (lightCounts == null || lightCounts.length() < heads + 1) {
                if (lightCounts != null) lightCounts.close();
                lightCounts = zeros(heads + 1);
            }
            ops.streams(4L * hd * in * 2 + 2L * hd * dim * 4); // the weights, and the states read and written
            String k3 = ops.v3Kernel("d3_proj_light", 1, in);
            ops.launchAt(k3, wQkv, (long) ceilDiv(4 * hd, ResidentOps.v3GroupRows(k3)) * NT, a.buf(), b.buf(), x, qkv,
                    gate, in, heads, dim, decay, pool, stride, layer, layers, info, o, w, eps, lightCounts);
            return true;
        }
    }

    /** Whether a product of this weight takes the v3 kernels: v3 on, bf16 rows of in % 8 == 0 (else v2's). */
    private boolean v3(ResidentOps.Weight w, int in) { return v2 && ops.v3() && w.bf16() && in % 8 == 0; }

    /** The MAXN cache arguments from index i: row t's cache, the dummy past n (never read). */
    private int caches(Object[] args, int i, Buffer[] caches, int n, long rowWidth) {
        for (int t = 0; t < MAXN; t++) args[i++] = caches != null && t < n ? caches[t] : dummy;
        return i;
    }

    @Override
    public void lightning(Buffer qkv, int n, int heads, int dim, Buffer decay, Buffer pool, int layer, int layers,
                          long stride, Buffer o, Buffer gate, Buffer w, float eps) {
        long hd = (long) heads * dim;
        check(qkv, 0, 3 * hd * n);
        check(o, 0, hd * n);
        check(gate, 0, hd * n);
        synchronized (ops) {
            ops.streams(2L * n * heads * dim * dim * 4); // the states, read and written
            int colTiles = ceilDiv(dim, ResidentOps.LS_COLS);
            if (!v2) {
                ops.launchAt("dec_lightning", decay, (long) n * heads * colTiles * NT, qkv, decay, pool, stride, layer,
                        layers, info, o, gate, w, eps, heads, dim, rowCounts);
                return;
            }
            // about two groups per compute unit over all rows and heads, each at least two rows of each slice
            int splits = lightningSplits > 0 ? lightningSplits
                    : Math.max(1, Math.min(ceilDiv(2 * ops.computeUnits(), n * heads * colTiles), dim / (2 * ResidentOps.LS_SLICES)));
            splits = Math.min(splits, dim);
            long need = (long) n * splits * hd;
            if (lightPart == null || lightPart.length() < need) {
                if (lightPart != null) lightPart.close();
                lightPart = ops.floats(Math.max(need, 1 << 16));
            }
            ops.launchAt("dec_lightning2", decay, (long) n * heads * colTiles * splits * NT, qkv, decay, pool, stride,
                    layer, layers, info, o, gate, w, eps, heads, dim, rowCounts, lightPart, splits);
        }
    }

    @Override
    public void attention(Buffer q, int n, int heads, int kvHeads, int dim, Buffer[] kCaches, Buffer[] vCaches,
                          int maxLen, Buffer o) {
        if (!ResidentOps.attentionFits(heads, kvHeads, dim)) {
            throw new IllegalArgumentException("decode attention takes D <= " + ResidentOps.DA_MAXD + " and H/KV <= "
                    + ResidentOps.DA_MAXG + ", got H=" + heads + " KV=" + kvHeads + " D=" + dim);
        }
        long hd = (long) heads * dim;
        check(q, 0, hd * n);
        check(o, 0, hd * n);
        synchronized (ops) {
            // about two groups per compute unit over all rows and kv heads; splits of whole tiles of NT keys
            int want = Math.max(1, 2 * ops.computeUnits() / (n * kvHeads));
            // v2: splits of 32 keys and up (v1: whole tiles of NT). On an H200 (call 2, 128-400 keys) a split of 256
            // kept dec_attn at 4 groups a row, 105 us a launch: the largest single item of a batch-1 step
            int tile = v2 ? 32 : NT;
            int splitLen = Math.max(tile, ceilDiv(ceilDiv(maxLen, want), tile) * tile);
            int splits = ceilDiv(maxLen, splitLen);
            long need = (long) n * kvHeads * splits * (heads / kvHeads) * (dim + 2);
            if (attnPart == null || attnPart.length() < need) {
                if (attnPart != null) attnPart.close();
                attnPart = ops.floats(Math.max(need, 1 << 16));
            }
            Object[] args = new Object[11 + 2 * MAXN];
            int i = 0;
            args[i++] = q;
            args[i++] = info;
            args[i++] = attnPart;
            args[i++] = o;
            args[i++] = heads;
            args[i++] = kvHeads;
            args[i++] = dim;
            args[i++] = splitLen;
            args[i++] = splits;
            args[i++] = (float) (1.0 / Math.sqrt(dim));
            args[i++] = rowCounts;
            i = caches(args, i, kCaches, n, (long) kvHeads * dim);
            caches(args, i, vCaches, n, (long) kvHeads * dim);
            ops.launchAt("dec_attn", this, (long) n * kvHeads * splits * NT, args);
        }
    }

    @Override
    public void outputAndRoute(Buffer o, int n, Tensor w, Buffer a, Buffer x, float alpha, float beta, Buffer normW,
                               float eps, Tensor gate, int k, Buffer ids, Buffer wts, Buffer routeLog, long logOff) {
        synchronized (ops) {
            ResidentOps.Weight p = ops.weight(w), g = ops.weight(gate);
            int in = p.cols(), out = p.rows(), E = g.rows();
            if (g.cols() != out || g.bf16() != p.bf16()) throw new IllegalArgumentException("router " + gate + " vs " + w);
            if (E > ResidentOps.ROUTE_MAX_EXPERTS || k > E || k <= 0) {
                throw new IllegalArgumentException("router takes k <= E <= " + ResidentOps.ROUTE_MAX_EXPERTS + ", got E=" + E + " k=" + k);
            }
            check(o, 0, (long) n * in);
            check(a, 0, (long) n * out);
            check(x, 0, (long) n * out);
            check(ids, 0, (long) n * k);
            check(wts, 0, (long) n * k);
            if (routeLog != null) check(routeLog, logOff, (long) n * k);
            if (!tails && v3(p, in) && ops.v3Tails() && out % 8 == 0 && E <= 32) {
                // v3 with tails: the product, then the norm and router in its last group (d3_out_route)
                ops.streams((long) out * in * 2 + (long) E * out * (g.bf16() ? 2 : 4));
                String k3 = ops.v3Kernel("d3_out_route_" + (g.bf16() ? "bf16" : "f32"), n, in);
                ops.launchAt(k3, w, (long) ceilDiv(out, ResidentOps.v3GroupRows(k3)) * NT, p.buf(), o, a, n, in, out, x,
                        alpha, beta, normW, eps, g.buf(), E, k, ids, wts, routeLog == null ? ids : routeLog, logOff,
                        routeLog == null ? 0 : 1, outCount);
                return;
            }
            if (!tails) {
                ops.streams((long) out * in * (p.bf16() ? 2 : 4));
                String tc = ops.decodeTcKernel("dtc_matvec", p.bf16(), in);
                if (tc != null) {
                    ops.launchDtcAt(tc, w, (long) ceilDiv(out, DecodeTc.ROWS) * NT, p.buf(), 0L, o, 0L, a, 0L, n, in, out);
                } else if (v3(p, in)) {
                    String k3 = ops.v3Kernel("d3_matvec", n, in);
                    ops.launchAt(k3, w, (long) ceilDiv(out, ResidentOps.v3GroupRows(k3)) * NT, p.buf(), 0L, o, 0L, a,
                            0L, n, in, out);
                } else {
                    ops.launchAt((v2 ? "matvec2" + ResidentOps.rowsTag(warpRows) + "_" : "matvec_") + family(p.bf16(), in),
                            w, (long) ceilDiv(out, v2 ? WG * warpRows : MV_ROWS) * NT, p.buf(), 0L, o, 0L, a, 0L, n, in, out);
                }
                ops.streams((long) E * out * (g.bf16() ? 2 : 4));
                // v3: one pass (d3_norm_route) where h % 8 == 0 and E <= 32 (its logits in registers)
                boolean route3 = v2 && ops.v3() && out % 8 == 0 && E <= 32;
                ops.launchAt((route3 ? "d3_norm_route_" : v2 ? "dec_norm_route2_" : "dec_norm_route_")
                        + (g.bf16() ? "bf16" : "f32"), gate,
                        (long) n * NT, x, alpha, a,
                        beta, normW, eps, out, g.buf(), E, k, ids, wts, routeLog == null ? ids : routeLog, logOff,
                        routeLog == null ? 0 : 1);
                return;
            }
            ops.launchAt("dec_out_" + family(p.bf16(), in), w, (long) ceilDiv(out, MV_ROWS) * NT, p.buf(), o, a, n, in,
                    out, x, alpha, beta, normW, eps, g.buf(), E, k, ids, wts, routeLog == null ? ids : routeLog,
                    logOff, routeLog == null ? 0 : 1, outCount);
        }
    }

    @Override
    public void experts(ExpertSet set, Buffer x, int n, int k, Buffer ids, Buffer wts, Buffer act, Buffer pairs,
                        float alpha, float beta, Buffer normW, float eps) {
        ResidentOps.Experts ex = (ResidentOps.Experts) set;
        int inter = ex.w1().rows(), hidden = ex.w1().cols();
        check(x, 0, (long) n * hidden);
        check(ids, 0, (long) n * k);
        check(act, 0, (long) n * k * inter);
        check(pairs, 0, (long) n * k * hidden);
        if (n > MAXN) throw new IllegalArgumentException(n + " rows, at most " + MAXN);
        synchronized (ops) {
            String up = (v2 ? "moe_gate_up2_" : "moe_gate_up_") + family(ex.w1().bf16(), hidden);
            String down = "dec_down_" + family(ex.w2().bf16(), inter);
            int per = v2 ? WG : MV_ROWS;
            // the experts' weights as if every chosen expert is distinct (exact at batch 1, an upper bound above)
            long chosen = Math.min(ex.count(), (long) n * k);
            ops.streams(chosen * 2 * inter * hidden * (ex.w1().bf16() ? 2 : 4));
            // tensor cores first (-Dlightmesh.decode.tc), then the v3 products (-Dlightmesh.decode.kernels=v3), then v2
            String tcUp = tails ? null : ops.decodeTcKernel("dtc_gate_up", ex.w1().bf16(), hidden);
            String tcDown = tails ? null : ops.decodeTcKernel("dtc_down", ex.w2().bf16(), inter);
            if (tcUp != null) {
                ops.launchDtcAt(tcUp, set, (long) ex.count() * ceilDiv(inter, DecodeTc.ROWS) * NT,
                        ex.w1().buf(), ex.w3().buf(), x, ids, act, 0, n, k, inter, hidden);
            } else if (v3(ex.w1(), hidden) && ex.w3().bf16()) {
                // v3: groups over the n * k chosen slots, not the E experts
                String k3 = ops.v3Kernel("d3_gate_up", n, hidden);
                ops.launchAt(k3, set, (long) n * k * ceilDiv(inter, ResidentOps.v3GroupRows(k3)) * NT, ex.w1().buf(),
                        ex.w3().buf(), x, ids, act, 0, n, k, inter, hidden);
            } else {
                ops.launchAt(up, set, (long) ex.count() * ceilDiv(inter, per) * NT, ex.w1().buf(), ex.w3().buf(), x,
                        ids, act, 0, n, k, inter, hidden);
            }
            if (!tails) {
                ops.streams(chosen * inter * hidden * (ex.w2().bf16() ? 2 : 4));
                if (tcDown == null && v3(ex.w2(), inter) && ops.v3Tails() && hidden % 8 == 0) {
                    // v3 with tails: the down projection, then the residual and next norm in its last group
                    String k3 = ops.v3Kernel("d3_down_norm", n, inter);
                    ops.launchAt(k3, set, (long) n * k * ceilDiv(hidden, ResidentOps.v3GroupRows(k3)) * NT,
                            ex.w2().buf(), act, ids, pairs, 0, n, k, inter, hidden, x, alpha, beta, wts, normW, eps,
                            downCount);
                    return;
                }
                if (tcDown != null) ops.launchDtcAt(tcDown, set, (long) ex.count() * ceilDiv(hidden, DecodeTc.ROWS) * NT,
                        ex.w2().buf(), act, ids, pairs, 0, n, k, inter, hidden);
                else if (v3(ex.w2(), inter)) {
                    String k3 = ops.v3Kernel("d3_down", n, inter);
                    ops.launchAt(k3, set, (long) n * k * ceilDiv(hidden, ResidentOps.v3GroupRows(k3)) * NT,
                            ex.w2().buf(), act, ids, pairs, 0, n, k, inter, hidden);
                } else ops.launchAt((v2 ? "moe_down2" + ResidentOps.rowsTag(warpRows) + "_" : "moe_down_")
                        + family(ex.w2().bf16(), inter), set, (long) ex.count() * ceilDiv(hidden, v2 ? WG * warpRows : MV_ROWS)
                        * NT, ex.w2().buf(), act, ids, pairs, 0, n, k, inter, hidden);
                ops.launchAt(v2 ? "residual_norm2" : "residual_norm", set, (long) n * NT, x, alpha, pairs, wts, k, beta, 1, normW, eps, x, hidden);
                return;
            }
            ops.launchAt(down, set, (long) ex.count() * ceilDiv(hidden, MV_ROWS) * NT, ex.w2().buf(), act, ids, pairs,
                    n, k, inter, hidden, x, alpha, beta, wts, normW, eps, downCount);
        }
    }
}
