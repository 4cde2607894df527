package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.ReferenceOps;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Random;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.*;

/** Lightning attention prefill (block form) and decode (recurrent step) against {@link ReferenceOps}. */
class OpenClLightningTest {
    private final ReferenceOps ref = new ReferenceOps();

    /** Per-head decays of the M1 form, 2^(-8(h+1)/H) scaled as for some middle layer. */
    static float[] decays(int heads) {
        float[] d = new float[heads];
        for (int h = 0; h < heads; h++) d[h] = (float) (Math.pow(2, -8.0 * (h + 1) / heads) * 0.6);
        return d;
    }

    @ParameterizedTest(name = "n={0} H={1} D={2} block={3}")
    @CsvSource({
            "1, 1, 4, 4",        // one token
            "3, 2, 3, 4",        // one partial block
            "5, 2, 3, 4",        // a full block and a partial one
            "37, 2, 5, 16",      // odd D, partial last block
            "64, 3, 8, 64",      // exactly one block
            "300, 4, 33, 64",    // several blocks, partial last, D not a tile multiple
            "130, 2, 64, 256",   // block larger than the 64-row tile, partial
            "96, 1, 130, 32",    // D > 128: several column and state tiles
            "513, 2, 16, 128"})  // many blocks
    void prefillMatchesReference(int n, int heads, int dim, int block) {
        OpenClOps ops = ops();
        Random rnd = new Random(1000L * n + 10L * dim + heads + block);
        int hd = heads * dim;
        float[] q = random(rnd, n * hd, 1f), k = random(rnd, n * hd, 1f), v = random(rnd, n * hd, 1f);
        float[] state0 = random(rnd, heads * dim * dim, 0.5f); // continuing from an earlier chunk
        float[] decay = decays(heads);
        float[] wantState = state0.clone(), gotState = state0.clone();
        float[] want = poisoned(n * hd), got = poisoned(n * hd);
        ref.lightningPrefill(q, k, v, n, heads, dim, decay, block, wantState, want);
        ops.lightningPrefill(q, k, v, n, heads, dim, decay, block, gotState, got);
        assertClose("prefill out", want, got, n * hd);
        assertClose("prefill state", wantState, gotState, wantState.length);
    }

    @Test
    void prefillInSegmentsCarriesTheState() {
        OpenClOps ops = ops();
        int n = 200, heads = 2, dim = 6, block = 16;
        LightningLauncher lightning = ops.lightningLauncher();
        int saved = lightning.maxKvbFloats;
        lightning.maxKvbFloats = 3 * heads * dim * dim; // 3 blocks a segment: 5 segments, the last partial
        try {
            Random rnd = new Random(77);
            int hd = heads * dim;
            float[] q = random(rnd, n * hd, 1f), k = random(rnd, n * hd, 1f), v = random(rnd, n * hd, 1f);
            float[] decay = decays(heads);
            float[] wantState = new float[heads * dim * dim], gotState = new float[heads * dim * dim];
            float[] want = poisoned(n * hd), got = poisoned(n * hd);
            ref.lightningPrefill(q, k, v, n, heads, dim, decay, block, wantState, want);
            ops.lightningPrefill(q, k, v, n, heads, dim, decay, block, gotState, got);
            assertClose("segmented prefill out", want, got, n * hd);
            assertClose("segmented prefill state", wantState, gotState, wantState.length);
        } finally {
            lightning.maxKvbFloats = saved;
        }
    }

    @ParameterizedTest(name = "B={0} H={1} D={2}")
    @CsvSource({"1, 1, 4", "1, 4, 128", "3, 2, 5", "2, 3, 65", "4, 2, 33", "1, 1, 200"})
    void decodeMatchesReference(int batch, int heads, int dim) {
        OpenClOps ops = ops();
        Random rnd = new Random(31L * batch + 7L * heads + dim);
        int hd = heads * dim, per = heads * dim * dim;
        float[] decay = decays(heads);
        float[][] wantStates = new float[batch][], gotStates = new float[batch][];
        for (int s = 0; s < batch; s++) {
            wantStates[s] = random(rnd, per, 0.5f);
            gotStates[s] = wantStates[s].clone();
        }
        for (int step = 0; step < 3; step++) {
            float[] q = random(rnd, batch * hd, 1f), k = random(rnd, batch * hd, 1f), v = random(rnd, batch * hd, 1f);
            float[] want = poisoned(batch * hd), got = poisoned(batch * hd);
            ref.lightningDecode(q, k, v, batch, heads, dim, decay, wantStates, want);
            ops.lightningDecode(q, k, v, batch, heads, dim, decay, gotStates, got);
            assertClose("decode out, step " + step, want, got, batch * hd);
            for (int s = 0; s < batch; s++) assertClose("decode state " + s + ", step " + step, wantStates[s], gotStates[s], per);
        }
    }

    @Test
    void prefillEqualsDecodeStepByStep() {
        OpenClOps ops = ops();
        int n = 45, heads = 2, dim = 7, block = 8, hd = heads * dim;
        Random rnd = new Random(3);
        float[] q = random(rnd, n * hd, 1f), k = random(rnd, n * hd, 1f), v = random(rnd, n * hd, 1f);
        float[] decay = decays(heads);
        float[] prefillState = new float[heads * dim * dim];
        float[] prefillOut = poisoned(n * hd);
        ops.lightningPrefill(q, k, v, n, heads, dim, decay, block, prefillState, prefillOut);
        float[][] states = {new float[heads * dim * dim]};
        float[] stepOut = poisoned(n * hd);
        for (int t = 0; t < n; t++) {
            float[] o = poisoned(hd);
            ops.lightningDecode(slice(q, t, hd), slice(k, t, hd), slice(v, t, hd), 1, heads, dim, decay, states, o);
            System.arraycopy(o, 0, stepOut, t * hd, hd);
        }
        assertClose("prefill vs decode outputs", stepOut, prefillOut, n * hd);
        assertClose("prefill vs decode state", states[0], prefillState, prefillState.length);
    }

    private static float[] slice(float[] a, int row, int width) {
        float[] r = new float[width];
        System.arraycopy(a, row * width, r, 0, width);
        return r;
    }
}
