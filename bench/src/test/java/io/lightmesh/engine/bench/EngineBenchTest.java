package io.lightmesh.engine.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** EngineBench end to end on the tiny model: the parsed options reach the run, and the report says what ran. */
class EngineBenchTest {
    @Test
    void aTinyRunReportsWhatItWasAskedFor(@TempDir Path cache) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        int code = EngineBench.run("lightmesh bench", new String[]{"--size", "tiny", "--backend", "vector", "--threads", "1",
                        "--prompt-lengths", "256,512", "--decode-tokens", "4", "--batch", "2", "--repeat", "1",
                        "--bandwidth-mib", "0", "--cache-dir", cache.toString(), "--json"},
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(0, code, err.toString(StandardCharsets.UTF_8));
        JsonNode r = new ObjectMapper().readTree(out.toString(StandardCharsets.UTF_8));
        assertEquals("vector", r.get("backend").asText());
        assertEquals(1, r.get("threads").asInt());
        assertEquals("tiny", r.at("/model/size").asText());
        assertEquals("BF16", r.at("/model/dtype").asText());
        assertEquals(List.of(256, 512), r.get("prefill").findValuesAsText("tokens").stream().map(Integer::valueOf).toList());
        for (JsonNode p : r.get("prefill")) assertTrue(p.get("complete").asBoolean() && p.get("tokens_per_s").asDouble() > 0, p.toString());
        assertEquals(2, r.get("decode").size());
        assertEquals(1, r.at("/decode/0/batch").asInt());
        assertEquals(2, r.at("/decode/1/batch").asInt());
        assertEquals(4, r.at("/decode/0/steps").asInt());
        assertEquals(0.0, r.get("bandwidth_bytes_per_s").asDouble(), "--bandwidth-mib 0 skips the measurement");
        assertTrue(Files.list(cache).anyMatch(Files::isDirectory), "the checkpoint is kept in --cache-dir");
    }

    @Test
    void fitLineRecoversALine() {
        double[] ab = EngineBench.fitLine(List.of(new double[]{0, 1}, new double[]{2048, 2}, new double[]{4096, 3}));
        assertEquals(1, ab[0], 1e-9);
        assertEquals(1.0 / 2048, ab[1], 1e-12);
        assertEquals(5, EngineBench.fitLine(List.<double[]>of(new double[]{7, 5}))[0], 1e-12);
    }
}
