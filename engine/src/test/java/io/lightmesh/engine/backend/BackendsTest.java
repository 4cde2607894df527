package io.lightmesh.engine.backend;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BackendsTest {
    @Test
    void referenceByName() {
        try (TensorOps ops = Backends.create(" Reference ")) {
            assertEquals("reference", ops.name());
        }
    }

    @Test
    void vectorByName() {
        try (TensorOps ops = Backends.create("VECTOR")) {
            assertEquals("vector", ops.name());
        }
    }

    /** auto: an OpenCL GPU where there is one, else the Vector API; never OpenCL on a CPU (PoCL), however present. */
    @Test
    void autoPicksAGpuElseVectorNeverPocl() {
        try (TensorOps ops = Backends.create("auto")) {
            if (ops instanceof io.lightmesh.engine.backend.opencl.OpenClOps cl) {
                assertTrue(cl.device().contains("(GPU,"), "auto picked OpenCL on a non-GPU device: " + cl.device());
            } else {
                assertEquals("vector", ops.name());
            }
        }
    }

    /** Asked for by name, OpenCL runs on a CPU device (PoCL) where there is no GPU. */
    @Test
    void openclByNameTakesTheCpuDeviceToo() {
        TensorOps ops;
        try {
            ops = Backends.create("opencl");
        } catch (io.lightmesh.engine.backend.opencl.OpenClException e) {
            org.junit.jupiter.api.Assumptions.abort("no OpenCL device: " + e.getMessage());
            return;
        }
        try (ops) {
            assertEquals("opencl", ops.name());
            assertTrue(Backends.describe(ops).startsWith("opencl on "), Backends.describe(ops));
        }
    }

    @Test
    void unknownNameIsRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Backends.create("cuda"));
        assertTrue(e.getMessage().contains("auto, reference, vector or opencl"), e.getMessage());
    }
}
