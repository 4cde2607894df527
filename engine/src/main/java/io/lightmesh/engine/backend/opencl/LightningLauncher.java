package io.lightmesh.engine.backend.opencl;

/**
 * Runs {@link LightningPrefillKernel} and {@link LightningDecodeKernel}.
 *
 * <p>Copies per call (what the array interface of TensorOps allows): prefill sends q, k, v, the state and the decays
 * and brings back out and the state; the per-block states stay on the device between the three passes. Decode sends
 * q, k, v and the B states packed into one array and brings back out and the states (B x 4 MiB each way for M1).
 * Prompts are cut into segments of whole blocks so the device-only per-block states stay within
 * {@link #MAX_KVB_FLOATS}; the state simply carries from one segment to the next.
 */
final class LightningLauncher implements AutoCloseable {
    /** Per-block state storage of one segment: 32M floats = 128 MiB (32 blocks of M1's 64 heads x 128 x 128). */
    static final int MAX_KVB_FLOATS = 32 << 20;

    private final DeviceRuntime rt;
    /** Per-block state storage a segment may use; tests shrink it to exercise segmenting. */
    int maxKvbFloats = MAX_KVB_FLOATS;
    private final LightningPrefillKernel prefill;
    private final LightningDecodeKernel decode;
    private final Staging pq = new Staging(), pk = new Staging(), pv = new Staging(), pOut = new Staging(),
            pState = new Staging(), pDecay = new Staging();
    private final Staging dq = new Staging(), dk = new Staging(), dv = new Staging(), dOut = new Staging(),
            dState = new Staging(), dDecay = new Staging();

    LightningLauncher(DeviceRuntime rt) {
        this.rt = rt;
        this.prefill = rt.adopt(new LightningPrefillKernel());
        this.decode = rt.adopt(new LightningDecodeKernel());
        prefill.kvb = null;
    }

    synchronized void prefill(float[] q, float[] k, float[] v, int n, int heads, int dim, float[] decay, int blockSize,
                              float[] state, float[] out) {
        if (n == 0) return;
        if (blockSize <= 0) throw new IllegalArgumentException("block size " + blockSize);
        int hd = heads * dim, dd = dim * dim;
        LightningPrefillKernel kn = prefill;
        kn.q = pq.in(q, n * hd);
        kn.k = pk.in(k, n * hd);
        kn.v = pv.in(v, n * hd);
        kn.out = pOut.outFor(out, n * hd);
        kn.state = pState.in(state, heads * dd);
        kn.decay = pDecay.in(decay, heads);
        int segBlocks = Math.max(1, maxKvbFloats / (heads * dd));
        int totalBlocks = MatmulLauncher.ceilDiv(n, blockSize);
        kn.kvb = Staging.deviceOnly(kn.kvb, heads * Math.min(segBlocks, totalBlocks) * dd);
        kn.heads = heads;
        kn.dim = dim;
        kn.block = blockSize;
        kn.put(kn.q).put(kn.k).put(kn.v).put(kn.state).put(kn.decay);
        int kvTiles = MatmulLauncher.ceilDiv(dim, LightningPrefillKernel.KV_TILE);
        int rowTiles = MatmulLauncher.ceilDiv(blockSize, LightningPrefillKernel.ROWS);
        int colTiles = MatmulLauncher.ceilDiv(dim, LightningPrefillKernel.COLS);
        int t = LightningPrefillKernel.THREADS;
        for (int b0 = 0; b0 < totalBlocks; b0 += segBlocks) {
            int nb = Math.min(segBlocks, totalBlocks - b0);
            kn.base = b0 * blockSize;
            kn.n = Math.min(nb * blockSize, n - kn.base);
            kn.nBlocks = nb;
            kn.mode = LightningPrefillKernel.MODE_BLOCK_KV;
            rt.launch(kn, heads * nb * kvTiles * kvTiles * t, t, "lightning prefill block states");
            kn.mode = LightningPrefillKernel.MODE_SCAN;
            rt.launch(kn, MatmulLauncher.ceilDiv(heads * dd, t) * t, t, "lightning prefill scan");
            kn.mode = LightningPrefillKernel.MODE_BLOCK_OUT;
            rt.launch(kn, heads * nb * rowTiles * colTiles * t, t, "lightning prefill output");
        }
        kn.get(kn.out).get(kn.state);
        Staging.out(kn.out, out, n * hd);
        Staging.out(kn.state, state, heads * dd);
    }

    synchronized void decode(float[] q, float[] k, float[] v, int batch, int heads, int dim, float[] decay,
                             float[][] states, float[] out) {
        if (batch == 0) return;
        int hd = heads * dim, per = heads * dim * dim;
        LightningDecodeKernel kn = decode;
        kn.q = dq.in(q, batch * hd);
        kn.k = dk.in(k, batch * hd);
        kn.v = dv.in(v, batch * hd);
        kn.out = dOut.outFor(out, batch * hd);
        kn.decay = dDecay.in(decay, heads);
        if (batch == 1) {
            kn.state = dState.in(states[0], per);
        } else {
            kn.state = dState.exact(batch * per);
            for (int s = 0; s < batch; s++) System.arraycopy(states[s], 0, kn.state, s * per, per);
        }
        kn.batch = batch;
        kn.heads = heads;
        kn.dim = dim;
        kn.put(kn.q).put(kn.k).put(kn.v).put(kn.decay).put(kn.state);
        int groups = batch * heads * MatmulLauncher.ceilDiv(dim, LightningDecodeKernel.COLS);
        rt.launch(kn, groups * LightningDecodeKernel.THREADS, LightningDecodeKernel.THREADS, "lightning decode");
        kn.get(kn.out).get(kn.state);
        Staging.out(kn.out, out, batch * hd);
        if (batch == 1) {
            Staging.out(kn.state, states[0], per);
        } else {
            for (int s = 0; s < batch; s++) System.arraycopy(kn.state, s * per, states[s], 0, per);
        }
    }

    @Override
    public synchronized void close() {
        prefill.dispose();
        decode.dispose();
    }
}
