package io.lightmesh.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The CLI's contract: JSON shapes, score semantics (prefill rows + decode rows), exit codes and messages. */
class MainTest {
    @TempDir static Path dir;

    record Run(int code, String out, String err) {}

    @BeforeAll
    static void model() throws Exception {
        SyntheticCheckpoint.write(dir, SyntheticCheckpoint.Shape.tiny(), DType.F32, 11, false);
    }

    static Run run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void scoreMixesPrefillAndDecodeRowsAsDocumented() throws Exception {
        int[] ids = {5, 17, 300, 42, 7, 99, 123, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
        String csv = String.join(",", java.util.Arrays.stream(ids).mapToObj(Integer::toString).toList());
        Run r = run("score", "--model", dir.toString(), "--backend", "reference", "--ids", csv, "--prefill", "18",
                "--positions", "0,17,18,20");
        assertEquals(0, r.code(), r.err());
        JsonNode logits = new ObjectMapper().readTree(r.out()).get("logits");
        try (MiniMaxModel m = MiniMaxModel.load(dir, new ReferenceOps())) {
            float[][] all = m.prefill(m.newState(), ids, new int[]{0, 17, 18, 20});
            int i = 0;
            for (String p : List.of("0", "17", "18", "20")) {
                JsonNode row = logits.get(p);
                assertEquals(512, row.size());
                for (int v = 0; v < 512; v++) assertEquals(all[i][v], row.get(v).floatValue(), 1e-4, "position " + p);
                i++;
            }
        }
    }

    @Test
    void generateJsonHasOnlyTheNewIds() throws Exception {
        Run r = run("generate", "--model", dir.toString(), "--ids", "1,2,3", "--max-new-tokens", "5", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode o = new ObjectMapper().readTree(r.out());
        assertEquals(5, o.get("ids").size());
        assertEquals("length", o.get("finish_reason").asText());
        assertTrue(o.has("text"));
    }

    @Test
    void badInputGetsAMessageAndNonZeroExit() {
        Run unknown = run("frobnicate");
        assertEquals(2, unknown.code());
        assertTrue(unknown.err().contains("unknown command"), unknown.err());
        Run badFlag = run("generate", "--model", dir.toString(), "--ids", "1", "--bogus");
        assertEquals(2, badFlag.code());
        assertTrue(badFlag.err().contains("--bogus"), badFlag.err());
        Run badId = run("generate", "--model", dir.toString(), "--ids", "1,100000");
        assertEquals(1, badId.code());
        assertTrue(badId.err().contains("100000"), badId.err());
        Run noTokenizer = run("generate", "--model", dir.toString(), "--prompt", "hi");
        assertEquals(2, noTokenizer.code());
        assertTrue(noTokenizer.err().contains("tokenizer.json"), noTokenizer.err());
        Run noModel = run("info", "--model", dir.resolve("nope").toString());
        assertEquals(2, noModel.code());
        Run badPos = run("score", "--model", dir.toString(), "--ids", "1,2,3", "--prefill", "2", "--positions", "3");
        assertEquals(2, badPos.code());
        assertTrue(badPos.err().contains("--positions"), badPos.err());
        Run badBackend = run("info", "--model", dir.toString(), "--backend", "quantum");
        assertEquals(1, badBackend.code());
        assertTrue(badBackend.err().contains("quantum"), badBackend.err());
    }

    @Test
    void helpListsEveryCommandAndEachCommandsOptions() {
        Run top = run("--help");
        assertEquals(0, top.code(), top.err());
        for (String c : List.of("generate", "score", "tokenize", "detokenize", "info", "bench", "serve", "router", "prefill",
                "decode", "expert", "kafka", "bench-serve")) {
            assertTrue(top.out().contains(c), c + " missing from:\n" + top.out());
        }
        Run nothing = run();
        assertEquals(2, nothing.code(), "no command is a wrong command line");
        assertTrue(nothing.out().contains("generate"), nothing.out());
        Run gen = run("generate", "--help");
        assertEquals(0, gen.code(), gen.err());
        for (String f : List.of("--prompt", "--ids", "--max-new-tokens", "--temperature", "--logprobs", "--target", "--api-key", "--model", "--backend")) {
            assertTrue(gen.out().contains(f), f + " missing from:\n" + gen.out());
        }
        Run help = run("help", "score");
        assertEquals(0, help.code(), help.err());
        assertTrue(help.out().contains("--positions"), help.out());
    }

    @Test
    void typosGetTheNearestNameAndExitTwo() {
        Run cmd = run("genrate");
        assertEquals(2, cmd.code());
        assertTrue(cmd.err().contains("unknown command 'genrate'") && cmd.err().contains("lightmesh generate"), cmd.err());
        Run flag = run("generate", "--ids", "1", "--max-new-token", "3");
        assertEquals(2, flag.code());
        assertTrue(flag.err().contains("--max-new-token'") && flag.err().contains("--max-new-tokens"), flag.err());
        Run notInt = run("generate", "--ids", "1", "--max-new-tokens", "many");
        assertEquals(2, notInt.code());
        assertTrue(notInt.err().contains("--max-new-tokens") && notInt.err().contains("many"), notInt.err());
    }

    @Test
    void meshCommandsParseWithTheSameStyle() {
        Run bad = run("serve", "--http-prot", "8080");
        assertEquals(2, bad.code(), "refused before anything starts: " + bad.err());
        assertTrue(bad.err().contains("--http-prot") && bad.err().contains("--http-port"), bad.err());
        Run router = run("router", "--bogus", "1");
        assertEquals(2, router.code());
        assertTrue(router.err().contains("--bogus"), router.err());
    }

    @Test
    void benchParsesWithTheSameStyle() {
        // the bench module's own tests check its messages (printed on System.err, not on the stream given here)
        Run help = run("bench", "--help");
        assertEquals(0, help.code());
        assertTrue(help.out().startsWith("Usage: lightmesh bench") && help.out().contains("--prompt-lengths"), help.out());
        assertEquals(2, run("bench", "--decode-tokns", "3").code(), "refused before any model is written");
        assertEquals(2, run("bench", "--batch", "two").code());
    }
}
