package io.lightmesh.engine.config;

import com.code_intelligence.jazzer.junit.FuzzTest;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * config.json of either dialect, as bytes from outside: {@link ConfigLoader#load} either returns a self-consistent
 * {@link ModelConfig} or fails as it documents, an {@link IOException} for a file that is not JSON or an
 * {@link IllegalArgumentException} naming the field. Anything else (a NullPointerException from a field of the wrong
 * JSON type, an index out of bounds) is a finding. The corpus (ConfigFuzzTestInputs) holds both dialects.
 */
class ConfigFuzzTest {
    private static final Path FILE;

    static {
        try {
            FILE = Files.createTempFile("config-fuzz", ".json");
            FILE.toFile().deleteOnExit();
        } catch (IOException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    @FuzzTest(maxDuration = "10s")
    void configJson(byte[] json) throws IOException {
        Files.write(FILE, json);
        ModelConfig c;
        try {
            c = ConfigLoader.load(FILE);
        } catch (IOException e) {
            return; // not JSON (Jackson's parse error names line and column)
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage() != null && e.getMessage().contains("field "), () -> "no field named: " + e.getMessage());
            return;
        }
        // what the rest of the engine relies on
        assertEquals(c.numLayers(), c.softmaxLayer().length);
        assertTrue(c.vocabSize() > 0 && c.hiddenSize() > 0 && c.numHeads() > 0 && c.headDim() > 0 && c.intermediateSize() > 0);
        assertEquals(0, c.numHeads() % c.numKvHeads());
        assertTrue(c.rotaryDim() > 0 && c.rotaryDim() <= c.headDim() && c.rotaryDim() % 2 == 0);
        assertTrue(c.topK() >= 1 && c.topK() <= c.numExperts());
        assertTrue(c.blockSize() > 0);
    }
}
