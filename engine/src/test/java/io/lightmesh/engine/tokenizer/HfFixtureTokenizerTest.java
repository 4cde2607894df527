package io.lightmesh.engine.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The tokenizer trained with HF tokenizers by tools/reference/make_tokenizer.py (2048 ids, MiniMax-M1's special
 * tokens) against the ids and texts HF produced for it (fixtures/tokenizer/tokenizer_cases.json).
 */
class HfFixtureTokenizerTest {
    static Tokenizer tok;
    static JsonNode cases;

    @BeforeAll
    static void load() throws Exception {
        URL url = HfFixtureTokenizerTest.class.getResource("/fixtures/tokenizer/tokenizer.json");
        assumeTrue(url != null, "fixtures/tokenizer not present yet");
        Path json = Path.of(url.toURI());
        tok = Tokenizer.load(json);
        cases = new ObjectMapper().readTree(json.resolveSibling("tokenizer_cases.json").toFile());
        assertTrue(cases.size() > 10);
    }

    @TestFactory
    Stream<DynamicTest> everyCaseEncodesAndDecodesLikeHf() {
        List<DynamicTest> tests = new ArrayList<>();
        for (int i = 0; i < cases.size(); i++) {
            JsonNode c = cases.get(i);
            String text = c.get("text").asText();
            String name = "case " + i + ": " + (text.length() > 40 ? text.substring(0, 40) : text);
            tests.add(DynamicTest.dynamicTest(name.replace("\n", "\\n"), () -> {
                int[] ids = TokenizerTest.ints(c.get("ids"));
                assertArrayEquals(ids, tok.encode(text), "ids of " + text);
                assertEquals(c.get("decoded").asText(), tok.decode(ids));
                assertEquals(c.get("decoded").asText(), StreamingDecoderTest.stream(tok, ids, false));
                // and one byte per token, which splits every multi-byte character
                assertEquals(text, StreamingDecoderTest.stream(tok, byteIds(text), false));
            }));
        }
        return tests.stream();
    }

    @Test
    void vocabularyAndConfig() {
        assertEquals(2048, tok.vocabSize());
        assertEquals(tok.tokenId("<end_of_sentence>"), tok.eosId().getAsInt());
        assertEquals(tok.tokenId("<begin_of_document>"), tok.bosId().getAsInt()); // tokenizer_config.json's bos_token
        assertEquals(0, tok.tokenId("<begin_of_document>"));
        assertEquals(2, tok.tokenId("<end_of_sentence>"));
        assertTrue(tok.isSpecial(2));
        assertEquals(2044, tok.tokenId("<think>"));
        assertTrue(!tok.isSpecial(2044));
    }

    @Test
    void randomUnicodeRoundTrips() {
        Random rnd = new Random(11);
        int[][] ranges = {{0x20, 0x7E}, {0x4E00, 0x9FFF}, {0x1F300, 0x1F6FF}, {0x0400, 0x04FF}, {0x0590, 0x05FF},
                {0x0300, 0x036F}, {0x3040, 0x30FF}, {0xAC00, 0xD7A3}, {0x1D400, 0x1D7FF}, {0x09, 0x0D}, {0xA0, 0xFF}};
        for (int iter = 0; iter < 1000; iter++) {
            StringBuilder sb = new StringBuilder();
            int len = rnd.nextInt(60);
            for (int i = 0; i < len; i++) {
                int[] r = ranges[rnd.nextInt(ranges.length)];
                sb.appendCodePoint(r[0] + rnd.nextInt(r[1] - r[0] + 1));
                if (rnd.nextInt(6) == 0) sb.append(rnd.nextBoolean() ? " " : "\u200d");
            }
            String s = sb.toString();
            int[] ids = tok.encode(s);
            assertEquals(s, tok.decode(ids), "round trip of " + s);
            assertEquals(s, StreamingDecoderTest.stream(tok, ids, false));
        }
    }

    /** The ids of the single-byte tokens spelling {@code s}. */
    static int[] byteIds(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        int[] ids = new int[b.length];
        for (int i = 0; i < b.length; i++) ids[i] = tok.tokenId(String.valueOf(ByteLevel.BYTE_TO_CHAR[b[i] & 0xFF]));
        return ids;
    }

    @Test
    void throughputOnTheTrainedVocabulary() throws IOException {
        // a sanity bound only (shared build machines are slow and noisy); TokenizerBenchmark measures properly
        String text = TokenizerBenchmark.mixedText(1_000_000, 2);
        long t0 = System.nanoTime();
        int[] ids = tok.encode(text);
        double s = (System.nanoTime() - t0) / 1e9;
        assertEquals(text, tok.decode(ids));
        assertTrue(s < 30, "1 MB took " + s + " s");
    }
}
