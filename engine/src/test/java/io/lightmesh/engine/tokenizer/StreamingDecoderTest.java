package io.lightmesh.engine.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class StreamingDecoderTest {
    static String stream(Tokenizer tok, int[] ids, boolean skipSpecial) {
        StreamingDecoder d = new StreamingDecoder(tok, skipSpecial);
        StringBuilder sb = new StringBuilder();
        for (int id : ids) sb.append(d.accept(id));
        return sb.append(d.flush()).toString();
    }

    /** In the fixtures, token id b (0..255) is the single byte b. */
    static int[] byteIds(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        int[] ids = new int[b.length];
        for (int i = 0; i < b.length; i++) ids[i] = b[i] & 0xFF;
        return ids;
    }

    @Test
    void holdsSplitCharactersUntilComplete() throws IOException {
        Tokenizer tok = TokenizerTest.load("m1like");
        StreamingDecoder d = new StreamingDecoder(tok);
        assertEquals("h", d.accept('h'));
        assertEquals("", d.accept(0xE4));
        assertTrue(d.hasPending());
        assertEquals("", d.accept(0xBD));
        assertEquals("你", d.accept(0xA0));
        assertFalse(d.hasPending());
        // 😀 = F0 9F 98 80, fed as two 2-byte tokens
        assertEquals("", d.accept(tok.tokenId("ðŁ")));
        assertEquals("😀", d.accept(tok.tokenId("ĺĢ")));
        assertEquals("", d.flush());
    }

    @Test
    void invalidBytesBecomeReplacementOnlyOnceKnownInvalid() throws IOException {
        Tokenizer tok = TokenizerTest.load("m1like");
        StreamingDecoder d = new StreamingDecoder(tok);
        assertEquals("", d.accept(0xE4));
        assertEquals("\uFFFDA", d.accept('A'));      // E4 then 'A': E4 was a truncated sequence
        assertEquals("\uFFFD", d.accept(0xFF));      // never valid
        assertEquals("", d.accept(0xF0));
        assertEquals("", d.accept(0x9F));
        assertEquals("\uFFFD", d.flush());           // truncated at the end: one U+FFFD for the whole prefix
        assertEquals("", d.flush());
    }

    @Test
    void concatenationEqualsBatchDecodeOnHfCases() throws IOException {
        for (String variant : TokenizerTest.VARIANTS) {
            Tokenizer tok = TokenizerTest.load(variant);
            JsonNode cases = new ObjectMapper().readTree(TokenizerTest.resource(variant + ".cases.json").toFile());
            for (JsonNode c : cases.get("cases")) {
                int[] ids = TokenizerTest.ints(c.get("ids"));
                assertEquals(c.get("decoded").asText(), stream(tok, ids, false));
                // the same text fed one byte per token
                String text = c.get("text").asText();
                assertEquals(text, stream(tok, byteIds(text), false));
            }
            for (JsonNode c : cases.get("decode")) {
                int[] ids = TokenizerTest.ints(c.get("ids"));
                assertEquals(c.get("decoded").asText(), stream(tok, ids, false), "ids " + c.get("ids"));
                assertEquals(c.get("decoded_skip_special").asText(), stream(tok, ids, true), "ids " + c.get("ids"));
            }
        }
    }

    /** Rust's from_utf8_lossy (so HF) gives ED A0 two U+FFFD; the JDK's decoder gives one at the end of input. */
    @Test
    void truncatedSurrogateLeadFollowsUnicodeBestPractice() throws IOException {
        Tokenizer tok = TokenizerTest.load("m1like");
        assertEquals("\uFFFD\uFFFD", tok.decode(new int[]{0xED, 0xA0}));
        assertEquals("\uFFFD\uFFFD", stream(tok, new int[]{0xED, 0xA0}, false));
        assertEquals("\uFFFD", tok.decode(new int[]{0xF0, 0x90, 0x80}));
        assertEquals("\uFFFD\uFFFDx", tok.decode(new int[]{0xE0, 0x80, 'x'}));
    }

    @Test
    void randomByteSequencesMatchBatchDecode() throws IOException {
        Tokenizer tok = TokenizerTest.load("m1like");
        Random rnd = new Random(7);
        int[] interesting = {0x00, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE4, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF,
                0x9F, 0xA0, 0x8F, 0x90};
        for (int iter = 0; iter < 2000; iter++) {
            int[] ids = new int[rnd.nextInt(12)];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = rnd.nextBoolean() ? interesting[rnd.nextInt(interesting.length)] : rnd.nextInt(tok.vocabSize());
            }
            assertEquals(tok.decode(ids), stream(tok, ids, false));
        }
    }
}
