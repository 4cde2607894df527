package io.lightmesh.engine.tokenizer;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lightmesh.engine.fuzz.FuzzHarness;

import java.io.IOException;

import static io.lightmesh.engine.fuzz.FuzzHarness.parsedOrRefused;
import static io.lightmesh.engine.fuzz.FuzzHarness.refusal;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * tokenizer.json from outside: {@link Tokenizer#parse} either builds a tokenizer, which then encodes and decodes text
 * without failing, or rejects the file with the {@link IllegalArgumentException} naming the field that it documents
 * (a file that is not JSON fails earlier, in Jackson, with an IOException). Anything else is a finding, and so is a
 * hang (a pathological pattern) or a large allocation from an id. Seeds (TokenizerJsonFuzzTestInputs): the small
 * HF-made fixtures of every pre-tokenizer kind the engine supports.
 */
class TokenizerJsonFuzzTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @FuzzTest(maxDuration = "10s")
    void tokenizerJson(byte[] file) throws Exception {
        JsonNode root = parsedOrRefused(() -> JSON.readTree(file), refusal(IOException.class)); // not JSON: Tokenizer.load reports Jackson's error
        if (root == null) return;
        Tokenizer t = parsedOrRefused(() -> Tokenizer.parse(root, null),
                refusal(IllegalArgumentException.class, FuzzHarness::assertNamesField));
        if (t == null) return;
        for (String text : new String[] {"Hello world!", " <think>x</think>\n\n  12 345 élan 🎉", ""}) {
            int[] ids = t.encode(text);
            for (int id : ids) assertTrue(id >= 0 && id < t.vocabSize(), () -> "id " + id + " outside the vocabulary");
            t.decode(ids);
            t.encode(text, false);
        }
    }
}
