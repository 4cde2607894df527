package io.lightmesh.launcher;

import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.MeshModel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SyntheticModelWriterTest {
    @Test
    void writesALoadableModelOnceAndReusesIt(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("model");
        SyntheticCheckpoint.Shape tiny = SyntheticModelWriter.shape("tiny");
        assertTrue(SyntheticModelWriter.write(dir, tiny, DType.BF16, 1).startsWith("model: wrote"));
        try (MeshModel m = MeshModel.load(dir, Backends.create("reference"))) {
            assertEquals(tiny.hidden(), m.config().hiddenSize());
            assertEquals(tiny.layers(), m.config().numLayers());
        }
        long size = Files.size(dir.resolve("model.safetensors"));
        assertEquals("model: reusing " + dir, SyntheticModelWriter.write(dir, tiny, DType.F32, 1));
        assertEquals(size, Files.size(dir.resolve("model.safetensors")), "an existing model is left as it is");
        try (var files = Files.list(tmp)) {
            assertEquals(1, files.count(), "no temp folder left beside the model");
        }
    }

    @Test
    void knowsTheM1ShapeOfTheGpuFigures() {
        SyntheticCheckpoint.Shape s = SyntheticModelWriter.shape("1b");
        assertEquals(2048, s.hidden());
        assertEquals(16, s.layers());
        assertTrue(s.parameters() > 1.2e9 && s.parameters() < 1.3e9, "1.25B parameters, got " + s.parameters());
    }

    @Test
    void rejectsBadArguments() {
        assertThrows(IllegalArgumentException.class, () -> SyntheticModelWriter.main(new String[]{"--shape", "tiny"}));
        assertThrows(IllegalArgumentException.class, () -> SyntheticModelWriter.main(new String[]{"--dtype", "f8", "x"}));
        assertThrows(IllegalArgumentException.class, () -> SyntheticModelWriter.main(new String[]{"--shape", "huge", "x"}));
        assertThrows(IllegalArgumentException.class, () -> SyntheticModelWriter.main(new String[]{"--bogus", "1", "x"}));
    }
}
