package io.lightmesh.engine.weights;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.core.JsonProcessingException;
import io.lightmesh.engine.fuzz.FuzzHarness;
import io.lightmesh.engine.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.lightmesh.engine.fuzz.FuzzHarness.parsedOrRefused;
import static io.lightmesh.engine.fuzz.FuzzHarness.refusal;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A .safetensors file from outside ({@code [u64 header length][JSON header][data]}): {@link SafeTensorsFile#open}
 * either maps it, every tensor a slice inside the file whose size matches its shape and dtype, or fails with the
 * {@link IOException} it documents, its message saying why; the cause, if any, may only be Jackson's parse error or
 * an {@link IllegalArgumentException} of the engine's own checks (dtype, shape). A NullPointerException or an index
 * out of bounds wrapped as an IOException is still a finding. Seeds (SafeTensorsFuzzTestInputs): small F32, BF16 and
 * F16 files with and without {@code __metadata__}.
 */
class SafeTensorsFuzzTest {
    private static final Path FILE = FuzzHarness.tempFile("safetensors-fuzz", ".safetensors");

    @FuzzTest(maxDuration = "10s")
    void safetensorsFile(byte[] file) throws Exception {
        Files.write(FILE, file);
        try (SafeTensorsFile st = parsedOrRefused(() -> SafeTensorsFile.open(FILE),
                refusal(IOException.class, SafeTensorsFuzzTest::assertDocumented))) {
            if (st == null) return;
            for (Tensor t : st.tensors().values()) {
                assertTrue(t.data().byteSize() == t.size() * t.dtype().bytes());
                if (t.size() > 0) {
                    t.get(0);
                    t.get(t.size() - 1); // the whole slice lies inside the mapped file
                }
            }
        }
    }

    private static void assertDocumented(IOException e) {
        FuzzHarness.assertSaysWhy(e);
        Throwable cause = e.getCause();
        if (cause != null && !(cause instanceof JsonProcessingException) && !(cause instanceof IllegalArgumentException)) {
            fail("undocumented failure wrapped as IOException: " + cause, cause);
        }
    }
}
