package io.lightmesh.engine.backend.opencl;

/**
 * Runs causal softmax attention: {@link DecodeAttentionKernel} (split along the sequence) when few queries meet a
 * long cache, {@link FlashAttentionKernel} otherwise.
 *
 * <p>Copies per call: q, then keys and values of positions 0..start+n-1 (the caller's cache arrays as they are when
 * their length is exactly that, else that prefix through a staging array), and out back. The split partials stay on
 * the device between the two decode passes.
 */
final class AttentionLauncher implements AutoCloseable {
    private final DeviceRuntime rt;
    private final FlashAttentionKernel flash;
    private final DecodeAttentionKernel decode;
    private final Staging fq = new Staging(), fk = new Staging(), fv = new Staging(), fOut = new Staging();
    private final Staging dq = new Staging(), dk = new Staging(), dv = new Staging(), dOut = new Staging();
    /** Work-groups the decode pass aims for, so that short caches still fill the device. */
    private final int targetGroups;

    AttentionLauncher(DeviceRuntime rt) {
        this.rt = rt;
        this.flash = rt.adopt(new FlashAttentionKernel());
        this.decode = rt.adopt(new DecodeAttentionKernel());
        this.targetGroups = 4 * Math.max(1, rt.device().getMaxComputeUnits());
    }

    /** Whether the split decode kernel takes this shape. */
    static boolean decodeFits(int n, int heads, int kvHeads, int dim) {
        int rows = n * (heads / kvHeads);
        return dim <= DecodeAttentionKernel.MAX_DIM && rows <= DecodeAttentionKernel.MAX_ROWS
                && rows * dim <= DecodeAttentionKernel.MAX_RD;
    }

    synchronized void attend(float[] q, int n, int heads, int kvHeads, int dim, float[] kCache, float[] vCache,
                             int start, float[] out) {
        if (n == 0) return;
        if (heads % kvHeads != 0) throw new IllegalArgumentException(heads + " heads over " + kvHeads + " kv heads");
        int len = start + n;
        if (decodeFits(n, heads, kvHeads, dim) && len > 4 * n) {
            decode(q, n, heads, kvHeads, dim, kCache, vCache, start, out, len);
        } else {
            flash(q, n, heads, kvHeads, dim, kCache, vCache, start, out, len);
        }
    }

    private void flash(float[] q, int n, int heads, int kvHeads, int dim, float[] kCache, float[] vCache, int start,
                       float[] out, int len) {
        FlashAttentionKernel k = flash;
        int hd = heads * dim, kvd = kvHeads * dim;
        k.q = fq.in(q, n * hd);
        k.kc = fk.in(kCache, len * kvd);
        k.vc = fv.in(vCache, len * kvd);
        k.out = fOut.outFor(out, n * hd);
        k.n = n;
        k.heads = heads;
        k.kvHeads = kvHeads;
        k.dim = dim;
        k.start = start;
        k.scale = (float) (1.0 / Math.sqrt(dim));
        k.put(k.q).put(k.kc).put(k.vc);
        int groups = heads * MatmulLauncher.ceilDiv(n, FlashAttentionKernel.ROWS)
                * MatmulLauncher.ceilDiv(dim, FlashAttentionKernel.COLS);
        rt.launch(k, groups * FlashAttentionKernel.THREADS, FlashAttentionKernel.THREADS, "flash attention");
        k.get(k.out);
        Staging.out(k.out, out, n * hd);
    }

    private void decode(float[] q, int n, int heads, int kvHeads, int dim, float[] kCache, float[] vCache, int start,
                        float[] out, int len) {
        DecodeAttentionKernel k = decode;
        int hd = heads * dim, kvd = kvHeads * dim, rows = n * (heads / kvHeads);
        int keys = DecodeAttentionKernel.KEYS;
        int wantSplits = Math.max(1, targetGroups / kvHeads);
        int splitLen = MatmulLauncher.ceilDiv(MatmulLauncher.ceilDiv(len, wantSplits), keys) * keys;
        int splits = MatmulLauncher.ceilDiv(len, splitLen);
        k.q = dq.in(q, n * hd);
        k.kc = dk.in(kCache, len * kvd);
        k.vc = dv.in(vCache, len * kvd);
        k.out = dOut.outFor(out, n * hd);
        k.part = Staging.deviceOnly(k.part, kvHeads * splits * rows * (dim + 2));
        k.n = n;
        k.heads = heads;
        k.kvHeads = kvHeads;
        k.dim = dim;
        k.start = start;
        k.splits = splits;
        k.splitLen = splitLen;
        k.scale = (float) (1.0 / Math.sqrt(dim));
        k.put(k.q).put(k.kc).put(k.vc);
        int t = DecodeAttentionKernel.THREADS;
        k.mode = DecodeAttentionKernel.MODE_SPLIT;
        rt.launch(k, kvHeads * splits * t, t, "decode attention");
        k.mode = DecodeAttentionKernel.MODE_COMBINE;
        rt.launch(k, MatmulLauncher.ceilDiv(kvHeads * rows * dim, t) * t, t, "decode attention merge");
        k.get(k.out);
        Staging.out(k.out, out, n * hd);
    }

    @Override
    public synchronized void close() {
        flash.dispose();
        decode.dispose();
    }
}
