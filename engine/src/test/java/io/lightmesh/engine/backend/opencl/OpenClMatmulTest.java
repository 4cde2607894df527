package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.*;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link OpenClOps#matmul} against {@link ReferenceOps}, on both of its paths: the resident context's kernels
 * ({@link ResidentOps}: matrix-vector passes of 8 rows up to n = 32, the tiled GEMM from 33) and Aparapi's
 * {@link MatmulKernel} (matrix-vector for n <= 8, tiled above), which runs when the resident path is switched off.
 */
class OpenClMatmulTest {
    private final ReferenceOps ref = new ReferenceOps();

    /**
     * n, in, out: small n take the matrix-vector passes, the rest the tiled ones; most are ragged (not multiples of
     * the vector width, the 16-deep k tile or the 128-square output tile), some span several tiles each way.
     */
    static Stream<Arguments> shapes() {
        int[][] s = {
                {1, 64, 32}, {1, 7, 5}, {1, 1000, 37}, {3, 33, 17}, {8, 129, 131},
                {9, 31, 7}, {17, 257, 129}, {130, 100, 260}, {128, 128, 128}, {200, 16, 3}, {5, 1, 9},
                {33, 7, 5}, {40, 66, 129}, {257, 130, 300}, {300, 1024, 96}};
        return Stream.of("resident", "aparapi").flatMap(path -> Stream.of(DType.F32, DType.BF16)
                .flatMap(d -> Stream.of(s).map(x -> Arguments.of(path, d, x[0], x[1], x[2]))));
    }

    @ParameterizedTest(name = "{0} {1} n={2} in={3} out={4}")
    @MethodSource("shapes")
    void matchesReference(String path, DType dtype, int n, int in, int out) {
        OpenClOps ops = ops();
        Random rnd = new Random(31L * n + 7L * in + out + dtype.ordinal());
        Tensor w = weight(rnd, dtype, out, in);
        for (int call = 0; call < 2; call++) { // the second call reuses the weight already on the device
            float[] x = random(rnd, n * in, 1f);
            float[] want = poisoned(n * out);
            float[] got = poisoned(n * out);
            ref.matmul(x, n, w, want);
            if (path.equals("resident")) ops.resident().matmul(x, n, w, got);
            else ops.aparapiMatmul(x, n, w, got);
            assertClose(path + " " + dtype + " matmul call " + call, want, got, n * out);
        }
        ops.evict(List.of(w));
    }

    @Test
    void preloadedWeightsShareASlabAndStayCorrect() {
        OpenClOps ops = ops();
        Random rnd = new Random(5);
        List<Tensor> ws = List.of(weight(rnd, DType.F32, 19, 23), weight(rnd, DType.F32, 7, 19),
                weight(rnd, DType.BF16, 11, 23), weight(rnd, DType.BF16, 23, 11));
        ops.preload(ws);
        for (int round = 0; round < 2; round++) {
            for (Tensor w : ws) {
                int in = (int) w.dim(1), out = (int) w.dim(0);
                for (int n : new int[]{1, 12}) {
                    float[] x = random(rnd, n * in, 2f);
                    float[] want = poisoned(n * out), got = poisoned(n * out);
                    ref.matmul(x, n, w, want);
                    ops.matmul(x, n, w, got);
                    assertClose("preloaded " + w, want, got, n * out);
                }
            }
        }
    }

    @Test
    void evictedWeightsComeBackOnUse() {
        OpenClOps ops = ops();
        Random rnd = new Random(12);
        Tensor a = weight(rnd, DType.F32, 9, 10), b = weight(rnd, DType.BF16, 10, 9);
        ops.preload(List.of(a, b));
        ops.evict(List.of(a));
        for (Tensor w : List.of(a, b, a)) {
            int in = (int) w.dim(1), out = (int) w.dim(0);
            float[] x = random(rnd, 3 * in, 1f), want = poisoned(3 * out), got = poisoned(3 * out);
            ref.matmul(x, 3, w, want);
            ops.matmul(x, 3, w, got);
            assertClose("after evict " + w, want, got, 3 * out);
            ops.evict(List.of(a, b));
        }
    }

    @Test
    void largerCallerArraysKeepTheirTail() {
        OpenClOps ops = ops();
        Random rnd = new Random(9);
        Tensor w = weight(rnd, DType.F32, 13, 21);
        int n = 10;
        float[] x = random(rnd, n * 21 + 50, 1f);
        float[] got = poisoned(n * 13 + 40);
        float[] want = poisoned(n * 13);
        ref.matmul(x, n, w, want);
        ops.matmul(x, n, w, got);
        assertClose("matmul into a larger array", want, got, n * 13);
        for (int i = n * 13; i < got.length; i++) assertTrue(Float.isNaN(got[i]), "element " + i + " past n*out was written");
    }
}
