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

    @Test
    void autoAlwaysGivesABackend() {
        try (TensorOps ops = Backends.create("auto")) {
            assertTrue(ops.name().equals("opencl") || ops.name().equals("vector") || ops.name().equals("reference"), ops.name());
        }
    }

    @Test
    void unknownNameIsRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Backends.create("cuda"));
        assertTrue(e.getMessage().contains("auto, reference, vector or opencl"), e.getMessage());
    }
}
