package io.lightmesh.cli;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The built-in demo model: {@code models/demo} in the repository (trained, with its tokenizer), or, when that is
 * absent, a seeded random model in the real format written once to the user's cache.
 */
final class DemoModel {
    private DemoModel() {}

    static Path path() throws IOException {
        String home = System.getProperty("lightmesh.home");
        if (home != null) {
            Path demo = Path.of(home, "models", "demo");
            if (Files.exists(demo.resolve("config.json"))) return demo;
        }
        Path cache = Path.of(System.getProperty("user.home"), ".cache", "lightmesh", "synthetic-demo");
        if (!Files.exists(cache.resolve("config.json"))) {
            System.err.println("lightmesh: no models/demo found; writing a seeded random demo model to " + cache);
            SyntheticCheckpoint.write(cache, SyntheticCheckpoint.Shape.tiny(), DType.BF16, 1, true);
        }
        return cache;
    }
}
