package io.lightmesh.launcher;

import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** serve's child broker keeps its data in a temporary folder that must not outlive the mesh. */
class EmbeddedMeshCleanupTest {
    @TempDir Path dir;

    @Test
    void theBrokerFolderIsRemovedOnClose() throws Exception {
        Path model = dir.resolve("model");
        SyntheticCheckpoint.write(model, SyntheticCheckpoint.Shape.tiny(), DType.F32, 3, false);
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, -1, null, null, 0, 1, 1,
                1L << 28, 8, "lightmesh.requests.v1", 8, 8);
        Path broker;
        try (EmbeddedMesh mesh = EmbeddedMesh.start(o, s -> io.opentelemetry.api.OpenTelemetry.noop())) {
            broker = mesh.ownedBrokerDir();
            assertNotNull(broker, "no workDir and no Kafka given: the mesh makes its own broker folder");
            assertTrue(Files.isDirectory(broker.resolve("kafka")), "the broker's data lives there while the mesh runs");
        }
        assertFalse(Files.exists(broker), broker + " left behind after close");
    }

    @Test
    void deleteTreeRemovesNestedFiles() throws Exception {
        Path root = dir.resolve("a");
        Files.createDirectories(root.resolve("b/c"));
        Files.writeString(root.resolve("b/c/f.txt"), "x");
        Files.writeString(root.resolve("g.txt"), "y");
        EmbeddedMesh.deleteTree(root);
        assertFalse(Files.exists(root));
    }
}
