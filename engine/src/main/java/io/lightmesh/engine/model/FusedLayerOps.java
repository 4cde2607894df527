package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.FusedDecode;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.ResidentDecoder.Scratch;

/**
 * {@link LayerOps} of a decode step on the device's fused kernels ({@link FusedDecode}): one token of each of n
 * sequences (n up to {@link FusedDecode#maxRows()}), experts in-process, in seven launches a layer for the whole
 * batch (the lightning states of every sequence in the {@link StatePool}). The same math as {@link DeviceLayerOps}
 * in the same order, each operation one launch or two; the experts and the MoE residual are one operation, run in
 * {@link #finishMoe}.
 */
final class FusedLayerOps implements LayerOps {
    private final ResidentDecoder r;
    private final FusedDecode f;
    private final Scratch s;
    private final int n, maxLen;
    private final int[] tokens, pos, slots; // [n]
    private final DeviceState[] dev;        // [n]: row t's sequence
    private final float eps;

    FusedLayerOps(ResidentDecoder r, Scratch s, int[] tokens, int[] pos, DeviceState[] dev) {
        this.r = r;
        this.f = r.fused;
        this.s = s;
        this.n = tokens.length;
        this.tokens = tokens;
        this.pos = pos;
        this.dev = dev;
        this.slots = new int[n];
        int longest = 0;
        for (int i = 0; i < n; i++) {
            slots[i] = dev[i].slot();
            longest = Math.max(longest, pos[i] + 1);
        }
        this.maxLen = longest;
        this.eps = (float) r.c.rmsNormEps();
    }

    @Override
    public void embed() {
        f.rows(tokens, pos, slots, n); // token ids, positions and state slots in, one transfer
        f.embedNorm(r.embed, n, r.inNorm[0], eps, s.x());
    }

    @Override
    public void lightning(int l, LightningAttention la) {
        StatePool pool = r.pool;
        float eps = (float) ModelConfig.LIGHTNING_NORM_EPS;
        if (f.lightningLayer(s.x(), n, la.wQkv, la.wGate, s.qkv(), s.gate(), la.H, la.D, r.decay[l], pool.buffer(),
                pool.lightningIndex(l), pool.lightningLayers(), pool.stride(), s.o(), r.outNorm[l], eps)) return;
        f.lightningProjections(s.x(), n, la.wQkv, la.wGate, s.qkv(), s.gate());
        f.lightning(s.qkv(), n, la.H, la.D, r.decay[l], pool.buffer(), pool.lightningIndex(l), pool.lightningLayers(),
                pool.stride(), s.o(), s.gate(), r.outNorm[l], eps);
    }

    @Override
    public void softmax(int l, SoftmaxAttention sa) {
        Buffer[] kc = new Buffer[n], vc = new Buffer[n];
        for (int i = 0; i < n; i++) { // room for row t's k and v, written by the kernel at row pos[t]
            dev[i].reserveRow(l);
            kc[i] = dev[i].keys(l);
            vc[i] = dev[i].values(l);
        }
        f.attentionProjections(s.x(), n, sa.wq, sa.wk, sa.wv, s.q(), s.k(), s.v(), sa.H, sa.KV, sa.D, r.invFreq[l],
                sa.rope.rotaryDim / 2, kc, vc);
        f.attention(s.q(), n, sa.H, sa.KV, sa.D, kc, vc, maxLen, s.o());
    }

    @Override
    public void outputAndRoute(int l, DecoderLayer layer) {
        int K = layer.moe.K;
        f.outputAndRoute(s.o(), n, layer.outputWeight(), s.a(), s.x(), layer.attnAlpha, layer.attnBeta, r.postNorm[l],
                eps, layer.moe.gate, K, s.expertIds(), s.expertWeights(),
                r.executor.observesRouting() ? s.routeLog() : null, (long) l * n * K); // the ids logged for an observer
    }

    @Override
    public void startMoe(int l, DecoderLayer layer) {} // the experts run with their residual, in finishMoe

    @Override
    public void finishMoe(int l, DecoderLayer layer) {
        f.experts(r.experts[l], s.x(), n, layer.moe.K, s.expertIds(), s.expertWeights(), s.act(), s.pairs(),
                layer.mlpAlpha, layer.mlpBeta, r.nextNorm(l), eps);
        r.d.flush();
        if (l == r.layers.length - 1) r.reportRouting(s, n);
    }
}
