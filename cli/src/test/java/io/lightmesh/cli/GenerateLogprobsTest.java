package io.lightmesh.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code generate --logprobs / --prompt-logprobs / --n}: the log-probabilities it prints equal a log-softmax of what
 * {@code score} prints for the same tokens, and seeded choices are the same on every run.
 */
class GenerateLogprobsTest {
    @TempDir static Path dir;

    @BeforeAll
    static void model() throws Exception {
        SyntheticCheckpoint.write(dir, SyntheticCheckpoint.Shape.tiny(), DType.F32, 11, false);
    }

    static JsonNode run(String... args) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(0, code, err.toString(StandardCharsets.UTF_8));
        return new ObjectMapper().readTree(out.toString(StandardCharsets.UTF_8));
    }

    static double logSoftmax(JsonNode row, int token) {
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (JsonNode v : row) max = Math.max(max, v.asDouble());
        for (JsonNode v : row) sum += Math.exp(v.asDouble() - max);
        return row.get(token).asDouble() - max - Math.log(sum);
    }

    @Test
    void logprobsEqualScoresLogSoftmax() throws Exception {
        String m = dir.toString();
        JsonNode g = run("generate", "--model", m, "--backend", "reference", "--ids", "5,17,300,42", "--max-new-tokens", "6",
                "--temperature", "1", "--seed", "9", "--logprobs", "3", "--prompt-logprobs", "1", "--json");
        List<Integer> ids = new ArrayList<>(List.of(5, 17, 300, 42));
        for (JsonNode t : g.get("ids")) ids.add(t.asInt());
        String csv = String.join(",", ids.stream().map(String::valueOf).toList());
        StringBuilder positions = new StringBuilder();
        for (int p = 0; p < ids.size() - 1; p++) positions.append(p == 0 ? "" : ",").append(p);
        JsonNode logits = run("score", "--model", m, "--backend", "reference", "--ids", csv, "--prefill", "4",
                "--positions", positions.toString()).get("logits");
        JsonNode lps = g.get("logprobs");
        assertEquals(6, lps.size());
        for (int i = 0; i < 6; i++) {
            JsonNode e = lps.get(i);
            assertEquals((int) ids.get(4 + i), e.get("id").asInt());
            assertEquals(logSoftmax(logits.get(Integer.toString(3 + i)), e.get("id").asInt()), e.get("logprob").asDouble(), 1e-4, "token " + i);
            assertEquals(3, e.get("top_logprobs").size());
            for (JsonNode alt : e.get("top_logprobs")) {
                assertEquals(logSoftmax(logits.get(Integer.toString(3 + i)), alt.get("id").asInt()), alt.get("logprob").asDouble(), 1e-4);
            }
        }
        JsonNode prompt = g.get("prompt_logprobs");
        assertEquals(3, prompt.size());
        for (int i = 0; i < 3; i++) {
            assertEquals(logSoftmax(logits.get(Integer.toString(i)), ids.get(i + 1)), prompt.get(i).get("logprob").asDouble(), 1e-4);
        }
    }

    @Test
    void seededChoicesAreReproducible() throws Exception {
        String[] args = {"generate", "--model", dir.toString(), "--backend", "reference", "--ids", "1,2,3", "--max-new-tokens", "8",
                "--temperature", "1", "--seed", "4", "--n", "3", "--presence-penalty", "0.5", "--json"};
        JsonNode a = run(args), b = run(args);
        assertEquals(3, a.get("choices").size());
        assertEquals(a.get("choices"), b.get("choices"));
        assertEquals(a.get("ids"), a.get("choices").get(0).get("ids"));
        assertNotEquals(a.get("choices").get(0).get("ids"), a.get("choices").get(1).get("ids"));
        assertTrue(a.get("choices").get(2).get("ids").size() == 8);
    }
}
