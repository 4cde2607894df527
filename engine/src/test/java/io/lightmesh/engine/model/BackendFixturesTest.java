package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.backend.VectorOps;
import io.lightmesh.engine.backend.opencl.OpenClException;
import io.lightmesh.engine.backend.opencl.OpenClOps;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.file.Path;

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
            OpenClOps ops = openClOrSkip(true);
            try (ops) {
                ReferenceFixturesTest.check(dir, ops, m -> {
                    MiniMaxModel r = m.withExperts(new ResidentDecodeTest.Elsewhere(
                            new LocalExperts(m.config(), m.weights(), new io.lightmesh.engine.backend.ReferenceOps()))).withMicroBatching(pingPong);
                    org.junit.jupiter.api.Assertions.assertEquals(new ForwardPath(true, true, true, pingPong), r.path());
                    return r;
                });
            }
        }
    }

    private static OpenClOps openClOrSkip(boolean resident) {
        try {
            return OpenClOps.create(OpenClOps.Preference.GPU_THEN_CPU, resident);
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
            ReferenceFixturesTest.check(dir, ops);
        }
    }

}
