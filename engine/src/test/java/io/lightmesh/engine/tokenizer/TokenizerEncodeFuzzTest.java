package io.lightmesh.engine.tokenizer;

import com.code_intelligence.jazzer.junit.FuzzTest;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Prompt text from outside through the M1-style tokenizer (the fixture the demo model ships): encoding never fails,
 * gives ids inside the vocabulary, and decoding gives the text back (byte-level BPE loses nothing; text with an
 * unpaired surrogate, which UTF-8 cannot carry, is only checked not to fail; the input bytes are read as UTF-8). Both encode modes: special tokens
 * parsed (the chat template's output) and not (user text).
 */
class TokenizerEncodeFuzzTest {
    private static final Tokenizer TOKENIZER;

    static {
        try {
            TOKENIZER = Tokenizer.load(Path.of("src/test/resources/fixtures/tokenizer/tokenizer.json"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @FuzzTest(maxDuration = "10s")
    void encode(byte[] utf8) {
        String text = new String(utf8, java.nio.charset.StandardCharsets.UTF_8);
        for (boolean special : new boolean[] {true, false}) {
            int[] ids = TOKENIZER.encode(text, special);
            for (int id : ids) assertTrue(id >= 0 && id < TOKENIZER.vocabSize(), () -> "id " + id + " outside the vocabulary");
            String back = TOKENIZER.decode(ids);
            if (wellFormed(text)) assertEquals(text, back);
        }
    }

    private static boolean wellFormed(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c)) {
                if (i + 1 >= s.length() || !Character.isLowSurrogate(s.charAt(i + 1))) return false;
                i++;
            } else if (Character.isLowSurrogate(c)) {
                return false;
            }
        }
        return true;
    }
}
