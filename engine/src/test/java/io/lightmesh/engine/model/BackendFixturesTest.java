package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.backend.VectorOps;
import io.lightmesh.engine.backend.opencl.OpenClException;
import io.lightmesh.engine.backend.opencl.OpenClOps;
import io.lightmesh.engine.backend.opencl.ResidentOps;
import io.lightmesh.engine.backend.opencl.TensorCores;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The fast backends through the whole engine against the same Hugging Face fixtures and tolerance as the reference
 * backend ({@link ReferenceFixturesTest#TOL}, identical greedy tokens). OpenCL runs on a GPU if there is one, else
 * on PoCL; without any device it is skipped, unless LIGHTMESH_REQUIRE_OPENCL=1 (CI) makes that a failure.
 */
class BackendFixturesTest {

    static java.util.stream.Stream<Path> cases() throws IOException { return ReferenceFixturesTest.cases(); }

    @ParameterizedTest(name = "vector {0}")
    @MethodSource("cases")
    void vectorBackendMatchesHuggingFace(Path dir) throws Exception {
        try (TensorOps ops = new VectorOps()) {
            ReferenceFixturesTest.check(dir, ops);
        }
    }

    /** Decode on the device-resident path (activations, states and caches on the device). */
    @ParameterizedTest(name = "opencl resident {0}")
    @MethodSource("cases")
    void openClResidentDecodeMatchesHuggingFace(Path dir) throws Exception {
        openCl(dir, true);
    }

    /**
     * Decode on the device-resident path one launch per operation (the step a batch past the fused kernels' 8 rows
     * takes), so that the fused step, the per-operation step, and the host arrays all meet the same fixtures.
     */
    @ParameterizedTest(name = "opencl resident per operation {0}")
    @MethodSource("cases")
    void openClResidentPerOperationDecodeMatchesHuggingFace(Path dir) throws Exception {
        OpenClOps ops = open();
        try (ops) {
            if (ops.resident() != null) ops.resident().useTensorCores(false);  // the fp32 products: 1e-4
            ReferenceFixturesTest.check(dir, ops, m -> {
                MiniMaxModel perOp = m.withoutFusedDecode();
                SequenceState s = perOp.newState();
                perOp.prefill(s, new int[]{1});
                perOp.decode(java.util.List.of(s), new int[]{2});
                org.junit.jupiter.api.Assertions.assertFalse(perOp.lastDecodeFused(), "the per-operation step");
                return perOp;
            });
        }
    }

    /** Decode through the array operations of TensorOps (host activations, copies per call). */
    @ParameterizedTest(name = "opencl arrays {0}")
    @MethodSource("cases")
    void openClArrayDecodeMatchesHuggingFace(Path dir) throws Exception {
        openCl(dir, false);
    }

    /**
     * The device path with the experts computed elsewhere (the host's experts behind an executor that is not local,
     * as expert shards are): MoE input rows down, combined rows up, with and without the two micro-batches.
     */
    @ParameterizedTest(name = "opencl resident, remote experts {0}")
    @MethodSource("cases")
    void openClResidentWithRemoteExpertsMatchesHuggingFace(Path dir) throws Exception {
        for (boolean pingPong : new boolean[]{true, false}) {
            OpenClOps ops = open();
            try (ops) {
                if (ops.resident() != null) ops.resident().useTensorCores(false);  // the fp32 products: 1e-4
                ReferenceFixturesTest.check(dir, ops, m -> {
                    MiniMaxModel r = m.withExperts(new ResidentDecodeTest.Elsewhere(
                            new LocalExperts(m.config(), m.weights(), new io.lightmesh.engine.backend.ReferenceOps()))).withMicroBatching(pingPong);
                    org.junit.jupiter.api.Assertions.assertEquals(new ForwardPath(true, true, true, pingPong), r.path());
                    return r;
                });
            }
        }
    }

    /**
     * The tensor-core path's bound: Hugging Face transformers' own bf16 run of the fixture (tools/gpu/hf_fixture_bf16.py
     * on the H200, 2026-12-03, tools/gpu/results/2026-12-03-h200-hf-fixtures-bf16.txt: weights and activations in
     * bf16, eager attention), the larger of its max |diff| / max |reference| over the prefill rows (1.052e-2) and over
     * the cached decode steps (9.965e-3), on the trained demo model, where HF bf16 keeps all 12 greedy tokens.
     *
     * <p>The three random-weight fixtures are left out on purpose: their N(0, 0.2) weights make them chaotic under
     * bf16 (HF's own bf16 run is off by 0.24 / 0.99 / 1.66 of the logit scale on hf_bf16_single /
     * m1_f32_sharded_partial_rope / hf_f32_single and keeps 1-2 of 12 greedy tokens; the engine with every product
     * rounded to bf16 on the host lands at 0.20 / 1.09 / 1.61), so no bf16 path can be compared on them; they hold the
     * fp32 paths to 1e-4 above.
     */
    static final Map<String, Double> HF_BF16_ERROR = Map.of("demo", 1.052e-2);

    static java.util.stream.Stream<Path> bf16Cases() throws IOException {
        return cases().filter(p -> HF_BF16_ERROR.containsKey(p.getFileName().toString()));
    }

    /**
     * Prefill and decode with the products of 33+ rows on tensor cores (bf16 activations): within HF's own bf16
     * error ({@link #HF_BF16_ERROR}); greedy tokens not compared (a bf16 run may take another near-tie). On devices
     * without tensor cores the kernels run emulated (TC_EMULATE), so that CI checks the path's wiring.
     */
    @ParameterizedTest(name = "opencl tensor cores {0}")
    @MethodSource("bf16Cases")
    void openClTensorCoresWithinHuggingFaceBf16Error(Path dir) throws Exception {
        OpenClOps ops = open();
        try (ops) {
            ResidentOps r = ops.resident();
            if (!r.tensorCores().available()) {
                if (TensorCores.nvidia(r.vendor())) fail("NVIDIA device without tensor cores: " + r.tensorCores());
                assertTrue(emulate(r), "emulated tensor-core kernels");
            }
            assertTrue(r.useTensorCores(true));
            String name = dir.getFileName().toString();
            double bound = HF_BF16_ERROR.get(name);
            double[] err = ReferenceFixturesTest.check(dir, ops, bound, false);
            System.out.printf(Locale.ROOT, "tensor cores%s on %s: max rel error prefill %.3e, decode %.3e (HF bf16: %.3e)%n",
                    r.tensorCores().available() ? "" : " (emulated)", name, err[0], err[1], bound);
        }
    }

    /** Builds the tensor-core kernels with their plain-C emulation of mma (test hook of ResidentOps). */
    private static boolean emulate(ResidentOps r) {
        return io.lightmesh.engine.backend.opencl.TensorCoreTestHook.emulate(r);
    }

    private static OpenClOps open() {
        try {
            return OpenClOps.create(OpenClOps.Preference.GPU_THEN_CPU, true);
        } catch (OpenClException e) {
            String req = System.getProperty("LIGHTMESH_REQUIRE_OPENCL", System.getenv("LIGHTMESH_REQUIRE_OPENCL"));
            if ("1".equals(req)) fail("LIGHTMESH_REQUIRE_OPENCL=1 but no OpenCL device works: " + e.getMessage(), e);
            Assumptions.abort("no OpenCL device: " + e.getMessage());
            return null;
        }
    }

    private static void openCl(Path dir, boolean resident) throws Exception {
        OpenClOps ops;
        try {
            ops = OpenClOps.create(OpenClOps.Preference.GPU_THEN_CPU, resident);
        } catch (OpenClException e) {
            String req = System.getProperty("LIGHTMESH_REQUIRE_OPENCL", System.getenv("LIGHTMESH_REQUIRE_OPENCL"));
            if ("1".equals(req)) fail("LIGHTMESH_REQUIRE_OPENCL=1 but no OpenCL device works: " + e.getMessage(), e);
            Assumptions.abort("no OpenCL device: " + e.getMessage());
            return;
        }
        try (ops) {
            if (ops.resident() != null) ops.resident().useTensorCores(false);  // the fp32 products: 1e-4
            ReferenceFixturesTest.check(dir, ops);
        }
    }

}
