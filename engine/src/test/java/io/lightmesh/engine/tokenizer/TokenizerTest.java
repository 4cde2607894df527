package io.lightmesh.engine.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The hand-built tokenizers in test resources (written by make_fixtures.py) against the ids and texts that HF
 * tokenizers 0.23.2 produced for them (the *.cases.json files), plus hand-checked merges.
 */
class TokenizerTest {
    static final String[] VARIANTS = {"m1like", "gpt2", "merged_prev", "merged_next", "removed_invert", "contiguous"};

    static Path resource(String name) {
        try {
            return Path.of(TokenizerTest.class.getResource("/tokenizer/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static Tokenizer load(String variant) throws IOException {
        return Tokenizer.load(resource(variant + ".tokenizer.json"));
    }

    static int[] ints(JsonNode array) {
        int[] a = new int[array.size()];
        for (int i = 0; i < a.length; i++) a[i] = array.get(i).asInt();
        return a;
    }

    @TestFactory
    Stream<DynamicTest> encodesAndDecodesLikeHf() throws IOException {
        List<DynamicTest> tests = new ArrayList<>();
        for (String variant : VARIANTS) {
            Tokenizer tok = load(variant);
            JsonNode cases = new ObjectMapper().readTree(resource(variant + ".cases.json").toFile());
            for (JsonNode c : cases.get("cases")) {
                String text = c.get("text").asText();
                tests.add(DynamicTest.dynamicTest(variant + " case: " + text.replace("\n", "\\n"), () -> {
                    int[] expected = ints(c.get("ids"));
                    assertArrayEquals(expected, tok.encode(text), "ids of " + text);
                    assertEquals(c.get("decoded").asText(), tok.decode(expected));
                }));
            }
            for (JsonNode c : cases.get("decode")) {
                tests.add(DynamicTest.dynamicTest(variant + " decode " + c.get("ids"), () -> {
                    int[] ids = ints(c.get("ids"));
                    assertEquals(c.get("decoded").asText(), tok.decode(ids));
                    assertEquals(c.get("decoded_skip_special").asText(), tok.decode(ids, true));
                }));
            }
        }
        return tests.stream();
    }

    @Test
    void lowestRankMergesFirstAndLeftmostWinsTies() throws IOException {
        Tokenizer tok = load("m1like");
        // "hello": h-e (rank 1) and l-l (rank 2) beat e-l (rank 14), then he+ll, hell+o
        assertArrayEquals(new int[]{tok.tokenId("hello")}, tok.encode("hello"));
        // "aaa" merges its left pair: [aa, a], never [a, aa]
        assertArrayEquals(new int[]{tok.tokenId("aa"), tok.tokenId("a")}, tok.encode("aaa"));
        // 你 is three bytes merged in two steps; the byte-level form of its bytes E4 BD A0
        assertArrayEquals(new int[]{tok.tokenId("ä½ł")}, tok.encode("你"));
        assertEquals("ä½ł", tok.token(tok.encode("你")[0]));
        // a space-prefixed word keeps its space separate when no merge joins them ("Ġ" is byte 0x20)
        assertArrayEquals(new int[]{0x20, tok.tokenId("hello")}, tok.encode(" hello"));
    }

    @Test
    void specialTokensCanBeTreatedAsText() throws IOException {
        Tokenizer tok = load("m1like");
        int eos = tok.tokenId("<end_of_sentence>");
        assertArrayEquals(new int[]{'a', eos, 'b'}, tok.encode("a<end_of_sentence>b"));
        int[] plain = tok.encode("a<end_of_sentence>b", false);
        assertFalse(java.util.Arrays.stream(plain).anyMatch(id -> id == eos));
        assertEquals("a<end_of_sentence>b", tok.decode(plain));
        // non-special added tokens are still recognized
        assertArrayEquals(new int[]{tok.tokenId("<think>")}, tok.encode("<think>", false));
        assertEquals("ab", tok.decode(tok.encode("a<end_of_sentence>b"), true));
    }

    @Test
    void vocabularyLookups() throws IOException {
        Tokenizer tok = load("m1like");
        // The fixture declares its added tokens at 1000..1005 but leaves them out of the 294-entry model vocab:
        // HF then numbers them 294..299 in file order, and so must we.
        assertEquals(300, tok.vocabSize());
        assertEquals(296, tok.tokenId("<end_of_sentence>"));
        assertEquals("<end_of_sentence>", tok.token(296));
        assertEquals(294, tok.tokenId("<begin_of_document>"));
        assertEquals(-1, tok.tokenId("not a token"));
        assertNull(tok.token(300));
        assertNull(tok.token(-1));
        assertEquals("Ġ", tok.token(0x20));
        assertEquals(0x20, tok.tokenId("Ġ"));
        assertTrue(tok.isSpecial(296));
        assertFalse(tok.isSpecial(298)); // <think> is a plain added token
        assertFalse(tok.isSpecial(0x41));
        // no tokenizer_config.json beside these: well-known names
        assertEquals(296, tok.eosId().getAsInt());
        assertEquals(295, tok.bosId().getAsInt());
        assertEquals("", tok.decode(new int[]{300, -3, 99999}));
    }

    @Test
    void randomUnicodeRoundTrips() throws IOException {
        Tokenizer tok = load("m1like");
        Random rnd = new Random(42);
        int[][] ranges = {{0x20, 0x7E}, {0x4E00, 0x9FFF}, {0x1F600, 0x1F64F}, {0x0400, 0x04FF}, {0x0300, 0x036F},
                {0x3000, 0x303F}, {0x1F300, 0x1F5FF}, {0x00A0, 0x00FF}, {0x09, 0x0D}};
        for (int iter = 0; iter < 500; iter++) {
            StringBuilder sb = new StringBuilder();
            int len = rnd.nextInt(40);
            for (int i = 0; i < len; i++) {
                int[] r = ranges[rnd.nextInt(ranges.length)];
                sb.appendCodePoint(r[0] + rnd.nextInt(r[1] - r[0] + 1));
                if (rnd.nextInt(8) == 0) sb.append(' ');
            }
            String s = sb.toString();
            assertEquals(s, tok.decode(tok.encode(s)), "round trip of " + s);
        }
    }

    @Test
    void longTextsTokenizeInLinearTime() throws IOException {
        Tokenizer tok = load("m1like");
        // one 200K-char word without spaces and a long whitespace run: no quadratic blow-up, exact round trip
        String word = "ab".repeat(100_000);
        String spaces = " ".repeat(100_000) + "x";
        String cjk = "你好".repeat(50_000);
        for (String s : new String[]{word, spaces, cjk}) {
            long t0 = System.nanoTime();
            int[] ids = tok.encode(s);
            assertEquals(s, tok.decode(ids));
            assertTrue(System.nanoTime() - t0 < 10_000_000_000L, "took too long");
        }
        // 100,001 a's: 50,000 "aa" and the odd one out
        int[] ids = tok.encode("a".repeat(100_001));
        assertEquals(50_001, ids.length);
        assertEquals(tok.tokenId("a"), ids[50_000]);
    }

    @Test
    void stepsAfterByteLevelSeeTheByteAlphabet() throws IOException {
        ObjectMapper m = new ObjectMapper();
        com.fasterxml.jackson.databind.node.ObjectNode root =
                (com.fasterxml.jackson.databind.node.ObjectNode) m.readTree(resource("m1like.tokenizer.json").toFile());
        // ByteLevel first (so spaces are already "Ġ"), then a split on "Ġ": " world" -> "Ġ", "world"
        root.set("pre_tokenizer", m.readTree("""
                {"type": "Sequence", "pretokenizers": [
                  {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
                  {"type": "Split", "pattern": {"String": "Ġ"}, "behavior": "Isolated", "invert": false}]}"""));
        Tokenizer tok = Tokenizer.parse(root, null);
        // the same ids HF gives merged_prev, whose split also separates the space from "world"
        assertArrayEquals(new int[]{261, 32, 119, 263, 265}, tok.encode("hello world"));
        assertEquals("hello world", tok.decode(tok.encode("hello world")));
    }

    @Test
    void unsupportedComponentsFailLoudly() {
        ObjectMapper m = new ObjectMapper();
        String base = """
                {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
                 "decoder": {"type": "ByteLevel"}, %s}""";
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () ->
                Tokenizer.parse(m.readTree(base.formatted("\"pre_tokenizer\": {\"type\": \"Whitespace\"}")), null));
        assertTrue(e.getMessage().contains("pre_tokenizer"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () ->
                Tokenizer.parse(m.readTree(base.formatted("\"normalizer\": {\"type\": \"Lowercase\"}")), null));
        assertTrue(e.getMessage().contains("normalizer"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.parse(m.readTree("""
                {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}, "decoder": {"type": "ByteLevel"}}"""), null));
        assertTrue(e.getMessage().contains("merges[0]"), e.getMessage());
    }

    @Test
    void eosAndBosComeFromTokenizerConfig() throws IOException {
        ObjectMapper m = new ObjectMapper();
        JsonNode root = m.readTree(resource("m1like.tokenizer.json").toFile());
        Tokenizer tok = Tokenizer.parse(root, m.readTree("""
                {"eos_token": {"content": "<end_of_document>"}, "bos_token": null}"""));
        assertEquals(297, tok.eosId().getAsInt());
        assertTrue(tok.bosId().isEmpty());
        tok = Tokenizer.parse(root, m.readTree("{\"eos_token\": \"</think>\", \"bos_token\": \"<begin_of_document>\"}"));
        assertEquals(299, tok.eosId().getAsInt());
        assertEquals(294, tok.bosId().getAsInt());
    }
}
