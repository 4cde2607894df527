package io.lightmesh.engine.weights;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.lightmesh.engine.fuzz.FuzzHarness;
import io.lightmesh.engine.tensor.DType;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.lightmesh.engine.fuzz.FuzzHarness.parsedOrRefused;
import static io.lightmesh.engine.fuzz.FuzzHarness.refusal;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * model.safetensors.index.json from outside, beside two real shards (a.safetensors: x, y; b.safetensors: z):
 * {@link WeightStore#open} either opens exactly the tensors the index names, each from a shard inside the checkpoint
 * folder, or fails with the {@link IOException} it documents. Any other exception is a finding, and so is an index
 * that reaches a file outside the folder ("../", an absolute path).
 */
class WeightIndexFuzzTest {
    private static final Path DIR = FuzzHarness.tempDir("weight-index-fuzz");
    private static final Path INDEX = DIR.resolve("model.safetensors.index.json");

    static {
        try {
            new SafeTensorsWriter().put("x", new float[] {1, 2, 3, 4}, 2, 2).put("y", new float[] {5}, 1)
                    .write(DIR.resolve("a.safetensors"), DType.F32);
            new SafeTensorsWriter().put("z", new float[] {6, 7}, 2).write(DIR.resolve("b.safetensors"), DType.BF16);
            for (String f : new String[] {"a.safetensors", "b.safetensors"}) DIR.resolve(f).toFile().deleteOnExit();
            INDEX.toFile().deleteOnExit();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @FuzzTest(maxDuration = "10s")
    void indexJson(byte[] index) throws Exception {
        Files.write(INDEX, index);
        try (WeightStore ws = parsedOrRefused(() -> WeightStore.open(DIR), refusal(IOException.class, FuzzHarness::assertSaysWhy))) {
            if (ws == null) return;
            for (String name : ws.names()) assertTrue(name.equals("x") || name.equals("y") || name.equals("z"), name);
        }
    }
}
