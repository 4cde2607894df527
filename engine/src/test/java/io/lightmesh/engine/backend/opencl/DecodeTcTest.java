package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.SplittableRandom;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.poisoned;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.random;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.weight;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The decode products on tensor cores ({@code decode_tc.cl}, -Dlightmesh.decode.tc): each kernel of both forms against
 * its v2 twin (the start-up check), the products of 1..20 rows against the host, and the whole fused decode step of a
 * bf16 model against the reference backend. Off NVIDIA (PoCL) the mma is emulated in plain OpenCL C with the same
 * fragments, so the layout, the permuted k, the tiles and the epilogues are what is checked there; on the H200 the
 * PTX mma. Bounds: split (activations as bf16 hi + lo) 1e-4 as the fp32 fixtures (about 1e-6..1e-5 seen); bf16
 * (activations rounded to bf16) 2e-2 on the kernels (about 1.5e-3 seen) and {@link #BF16_LOGIT_TOL} on the logits.
 */
class DecodeTcTest {
    /**
     * The whole step with bf16 activations: max |diff| / max |ref logit| <= 1e-1 and relative L2 of a row's logits <=
     * 5e-2 (PoCL: 3.7e-2 and 3.2e-2 at worst; the tiny random model's 8 layers carry each product's ~1.5e-3 rounding on
     * to the logits). Split: the fixtures' 1e-4 on the max (1.2e-5 seen).
     */
    static final double BF16_LOGIT_TOL = 1e-1, BF16_LOGIT_L2 = 5e-2;
    static final double SPLIT_LOGIT_TOL = 1e-4;

    @TempDir static Path dir;

    private static ResidentOps d() { return OpenClTestSupport.ops().resident(); }

    /** Builds and checks decode_tc.cl once (the class's first test); on NVIDIA with the PTX mma, elsewhere emulated. */
    @BeforeEach
    void build() {
        formBefore = d().decodeProductsForm();
        if (!d().decodeTcBuilt()) assertNull(d().tryDecodeTc(), "decode_tc.cl builds and agrees with the v2 kernels");
    }

    private String formBefore;

    /** Back to the form before the test (the setting's, -Dlightmesh.decode.tc, or off) for the tests after. */
    @AfterEach
    void restore() { d().decodeProducts(formBefore); }

    @Test
    void everyKernelOfBothFormsMatchesItsV2Twin() {
        List<DecodeTc.Result> checks = d().decodeTcChecks();
        System.out.println("decode_tc.cl against the v2 kernels (relative L2): " + checks);
        assertEquals(10, checks.size());
        for (DecodeTc.Result r : checks) {
            assertTrue(r.ok(), r + " > " + r.form().tol());
            if (r.form() == DecodeTc.Form.SPLIT) assertTrue(r.error() <= 1e-4, r.toString());
        }
        assertEquals("split", d().decodeProducts("split"));
        assertEquals("bf16", d().decodeProducts("bf16"));
        assertEquals("off", d().decodeProducts("off"));
    }

    /** matmul of 1..20 rows (passes of 16, the N tile of 9..16) on tensor cores against the host, both forms. */
    @ParameterizedTest
    @CsvSource({"split,1e-4", "bf16,2e-2"})
    void productsOfFewRowsMatchTheHost(String form, double tol) {
        ResidentOps d = d();
        assertEquals(form, d.decodeProducts(form));
        Random rnd = new Random(61);
        ReferenceOps ref = new ReferenceOps();
        for (int[] sh : new int[][]{{40, 1064, 1}, {17, 264, 8}, {33, 520, 11}, {16, 2048, 16}, {24, 72, 20}}) {
            int out = sh[0], in = sh[1], n = sh[2];
            Tensor w = weight(rnd, DType.BF16, out, in);
            float[] x = random(rnd, n * in, 1f), want = new float[n * out], got = new float[n * out];
            ref.matmul(x, n, w, want);
            Buffer xb = d.upload(x), yb = d.upload(poisoned(n * out));
            try {
                d.matmul(xb, n, w, yb);
                d.read(yb, 0, got, 0, got.length);
            } finally {
                xb.close();
                yb.close();
            }
            double err = DecodeTc.relError(want, got);
            System.out.printf(Locale.ROOT, "matmul %s %dx%dx%d: relative L2 %.2e%n", form, n, in, out, err);
            assertTrue(err <= tol, form + " " + java.util.Arrays.toString(sh) + ": " + err + " > " + tol);
        }
    }

    /**
     * The whole decode step of a bf16 model (one softmax layer) with the decode products on tensor cores against the
     * reference backend: sequences joining at ragged positions, the fused step of 1..8 rows (same launches a step as
     * the v2 kernels), then 12 rows (the per-operation step, whose products of 12 rows take one dtc_matvec launch).
     */
    @ParameterizedTest
    @CsvSource({"split", "bf16"})
    void wholeDecodeStepMatchesTheHost(String form) throws IOException {
        double tol = form.equals("split") ? SPLIT_LOGIT_TOL : BF16_LOGIT_TOL;
        Path p = dir.resolve("bf16-" + form);
        SyntheticCheckpoint.write(p, SyntheticCheckpoint.Shape.tiny(), DType.BF16, 21, true);
        ResidentOps r = d();
        try (MiniMaxModel ref = MiniMaxModel.load(p, new ReferenceOps());
             MiniMaxModel dev = MiniMaxModel.load(p, OpenClTestSupport.ops())) {
            assertEquals(form, r.decodeProducts(form));
            long perStep = 7L * dev.config().numLayers() + 3; // + the embedding, the LM head and the argmax
            SplittableRandom rnd = new SplittableRandom(13);
            List<SequenceState> rs = new ArrayList<>(), ds = new ArrayList<>();
            int[] lengths = {1, 30, 7, 18, 2, 41, 12, 25, 3, 9, 14, 5};
            double worst = 0, worstL2 = 0;
            for (int step = 0; step < 9; step++) {
                int join = step < 4 ? 2 : step == 7 ? 4 : 0; // 2, 4, 6, 8 rows, then 12
                for (int j = 0; j < join && rs.size() < lengths.length; j++) {
                    int[] prompt = rnd.ints(lengths[rs.size()], 0, 512).toArray();
                    SequenceState a = ref.newState(), b = dev.newState();
                    ref.prefill(a, prompt);
                    dev.prefill(b, prompt);
                    rs.add(a);
                    ds.add(b);
                }
                int[] tokens = rnd.ints(rs.size(), 0, 512).toArray();
                float[][] want = ref.decode(rs, tokens), got = dev.decode(ds, tokens);
                if (tokens.length <= 8) {
                    assertTrue(dev.lastDecodeFused(), "step " + step + " runs fused");
                    assertEquals(perStep, dev.lastDecodeLaunches(), "launches of step " + step);
                }
                for (int i = 0; i < tokens.length; i++) {
                    double scale = 0, err = 0;
                    for (int v = 0; v < want[i].length; v++) {
                        scale = Math.max(scale, Math.abs(want[i][v]));
                        err = Math.max(err, Math.abs(want[i][v] - got[i][v]));
                    }
                    double rel = err / scale, l2 = DecodeTc.relError(want[i], got[i]);
                    worst = Math.max(worst, rel);
                    worstL2 = Math.max(worstL2, l2);
                    String what = form + " step " + step + " (" + tokens.length + " rows) sequence " + i;
                    assertTrue(rel <= tol, what + ": max |diff| / max |logit| " + rel + " > " + tol);
                    if (form.equals("bf16")) assertTrue(l2 <= BF16_LOGIT_L2, what + ": relative L2 " + l2 + " > " + BF16_LOGIT_L2);
                }
            }
            System.out.printf(Locale.ROOT, "whole decode step, tc=%s: max |diff| / max |logit| %.2e (bound %.0e), "
                    + "relative L2 of a row's logits %.2e%n", form, worst, tol, worstL2);
        }
    }
}
