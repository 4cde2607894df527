package io.lightmesh.engine.tokenizer;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Encode throughput on a few MB of mixed text (prose-like words, numbers, code, CJK, emoji). Opt-in, since
 * timings on a shared build machine mean little in a test run:
 * {@code mvn -pl engine test -Dtest=TokenizerBenchmark -Dlightmesh.bench=true [-Dlightmesh.bench.tokenizer=PATH]}.
 */
@EnabledIfSystemProperty(named = "lightmesh.bench", matches = "true")
class TokenizerBenchmark {
    static String mixedText(int chars, long seed) {
        Random rnd = new Random(seed);
        String[] syllables = {"th", "e", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is",
                "it", "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le", "ve", "co", "me", "de"};
        String[] extras = {"你好世界，今天天气很好。", "😀👍🏽", "for (int i = 0; i < n; i++) { sum += a[i]; }\n",
                "\n\n", "3.14159 ", "2024-11-13 ", "don't ", "  ", "\t", "https://example.com/x?y=1 "};
        StringBuilder sb = new StringBuilder(chars + 64);
        while (sb.length() < chars) {
            if (rnd.nextInt(12) == 0) {
                sb.append(extras[rnd.nextInt(extras.length)]);
                continue;
            }
            int n = 1 + rnd.nextInt(4);
            // a Zipf-ish word: low syllable indices far more often
            for (int i = 0; i < n; i++) sb.append(syllables[(int) (syllables.length * Math.pow(rnd.nextDouble(), 2.5))]);
            sb.append(rnd.nextInt(10) == 0 ? ". " : rnd.nextInt(12) == 0 ? ", " : " ");
        }
        return sb.toString();
    }

    @Test
    void encodeThroughput() throws IOException {
        String path = System.getProperty("lightmesh.bench.tokenizer");
        Tokenizer tok = path != null ? Tokenizer.load(Path.of(path)) : TokenizerTest.load("m1like");
        String text = mixedText(4_000_000, 1);
        int bytes = text.getBytes(StandardCharsets.UTF_8).length;
        for (int run = 0; run < 3; run++) {
            long t0 = System.nanoTime();
            int[] ids = tok.encode(text);
            double s = (System.nanoTime() - t0) / 1e9;
            System.out.printf("encode run %d: %.1f MB, %d tokens in %.2f s: %.0f tokens/s, %.1f MB/s%n",
                    run, bytes / 1e6, ids.length, s, ids.length / s, bytes / 1e6 / s);
            if (run == 2) assertEquals(text, tok.decode(ids));
        }
        int[] ids = tok.encode(text);
        long t0 = System.nanoTime();
        String back = tok.decode(ids);
        System.out.printf("decode: %d tokens in %.2f s%n", ids.length, (System.nanoTime() - t0) / 1e9);
        assertEquals(text.length(), back.length());
    }
}
