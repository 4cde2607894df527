package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.ReferenceOps;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Arrays;
import java.util.Random;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.*;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** Causal GQA softmax attention (flash prefill and split decode) against {@link ReferenceOps}. */
class OpenClAttentionTest {
    private final ReferenceOps ref = new ReferenceOps();

    @ParameterizedTest(name = "n={0} H={1} KV={2} D={3} start={4} spare={5}")
    @CsvSource({
            // flash path (many queries, or a short cache)
            "1, 4, 2, 8, 0, 0",
            "3, 4, 4, 5, 0, 3",
            "70, 8, 2, 33, 10, 0",
            "65, 2, 1, 130, 3, 5",
            "130, 4, 1, 64, 0, 0",
            "16, 2, 2, 16, 40, 0",
            // split decode path (few queries over a longer cache), GQA groups 1, 2, 4, 8
            "1, 8, 2, 16, 100, 0",
            "3, 8, 2, 7, 200, 4",
            "1, 4, 4, 32, 63, 0",
            "2, 4, 1, 64, 517, 9",
            "1, 64, 8, 128, 1000, 0",
            "8, 4, 2, 64, 300, 0"})
    void matchesReference(int n, int heads, int kvHeads, int dim, int start, int spare) {
        OpenClOps ops = ops();
        Random rnd = new Random(7L * n + 13L * heads + 17L * kvHeads + dim + 101L * start);
        int len = start + n, kvd = kvHeads * dim, hd = heads * dim;
        float[] q = random(rnd, n * hd, 1f);
        float[] kc = new float[(len + spare) * kvd], vc = new float[(len + spare) * kvd];
        System.arraycopy(random(rnd, len * kvd, 1.5f), 0, kc, 0, len * kvd);
        System.arraycopy(random(rnd, len * kvd, 1f), 0, vc, 0, len * kvd);
        // cache rows past start + n must never be read
        Arrays.fill(kc, len * kvd, kc.length, Float.NaN);
        Arrays.fill(vc, len * kvd, vc.length, Float.NaN);
        float[] want = poisoned(n * hd), got = poisoned(n * hd);
        ref.softmaxAttention(q, n, heads, kvHeads, dim, kc, vc, start, want);
        ops.softmaxAttention(q, n, heads, kvHeads, dim, kc, vc, start, got);
        assertClose("attention", want, got, n * hd);
    }

    @ParameterizedTest(name = "n={0} H={1} KV={2} D={3} start={4}")
    @CsvSource({"1, 8, 2, 16, 100", "3, 8, 2, 7, 200", "1, 64, 8, 128, 1000", "2, 4, 1, 64, 517"})
    void decodeShapesTakeTheSplitKernel(int n, int heads, int kvHeads, int dim, int start) {
        assertEquals(true, AttentionLauncher.decodeFits(n, heads, kvHeads, dim) && start + n > 4 * n);
    }
}
