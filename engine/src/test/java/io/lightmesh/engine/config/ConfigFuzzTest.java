package io.lightmesh.engine.config;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.lightmesh.engine.fuzz.FuzzHarness;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.lightmesh.engine.fuzz.FuzzHarness.parsedOrRefused;
import static io.lightmesh.engine.fuzz.FuzzHarness.refusal;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * config.json of either dialect, as bytes from outside: {@link ConfigLoader#load} either returns a self-consistent
 * {@link ModelConfig} or fails as it documents, an {@link IOException} for a file that is not JSON or an
 * {@link IllegalArgumentException} naming the field. Anything else (a NullPointerException from a field of the wrong
 * JSON type, an index out of bounds) is a finding. The corpus (ConfigFuzzTestInputs) holds both dialects.
 */
class ConfigFuzzTest {
    private static final Path FILE = FuzzHarness.tempFile("config-fuzz", ".json");

    @FuzzTest(maxDuration = "10s")
    void configJson(byte[] json) throws Exception {
        Files.write(FILE, json);
        ModelConfig c = parsedOrRefused(() -> ConfigLoader.load(FILE),
                refusal(IOException.class), // not JSON (Jackson's parse error names line and column)
                refusal(IllegalArgumentException.class, FuzzHarness::assertNamesField));
        if (c == null) return;
        // what the rest of the engine relies on
        assertEquals(c.numLayers(), c.softmaxLayer().length);
        assertTrue(c.vocabSize() > 0 && c.hiddenSize() > 0 && c.numHeads() > 0 && c.headDim() > 0 && c.intermediateSize() > 0);
        assertEquals(0, c.numHeads() % c.numKvHeads());
        assertTrue(c.rotaryDim() > 0 && c.rotaryDim() <= c.headDim() && c.rotaryDim() % 2 == 0);
        assertTrue(c.topK() >= 1 && c.topK() <= c.numExperts());
        assertTrue(c.blockSize() > 0);
    }
}
