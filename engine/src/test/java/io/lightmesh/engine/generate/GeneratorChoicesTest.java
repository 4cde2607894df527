package io.lightmesh.engine.generate;

import io.lightmesh.engine.backend.VectorOps;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateFork;
import io.lightmesh.engine.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Log-probabilities, prompt log-probabilities and several choices on the demo model, checked against the model's
 * own logits computed as {@code ./lightmesh score} does (prefill the prompt, then decode one token at a time, then a
 * log-softmax), and against single generations.
 */
class GeneratorChoicesTest {
    static final Path DEMO = Path.of("../models/demo");
    static MiniMaxModel model;
    static Tokenizer tok;
    static int[] prompt;

    @BeforeAll
    static void load() throws Exception {
        model = MiniMaxModel.load(DEMO, new VectorOps());
        tok = Tokenizer.load(DEMO.resolve("tokenizer.json"));
        prompt = tok.encode("def parse(path):\n    \"\"\"Return the");
    }

    @AfterAll
    static void close() { model.close(); }

    static SamplingParams sampled(long seed, int max) {
        return new SamplingParams(0.9f, 0, 1f, seed, max, List.of(), 0, true);
    }

    /** score's logits: prefill the prompt, then each generated token through decode; row i predicts tokens[i]. */
    static float[][] scoreLogits(int[] tokens) {
        SequenceState s = model.newState();
        float[][] rows = new float[tokens.length][];
        rows[0] = model.prefill(s, prompt);
        for (int i = 1; i < tokens.length; i++) rows[i] = model.decode(List.of(s), new int[]{tokens[i - 1]})[0];
        return rows;
    }

    static double logSoftmax(float[] logits, int token) { return logits[token] - TokenLogprob.logSumExp(logits); }

    @Test
    void generatedLogprobsEqualScoresLogSoftmax() {
        Generator.Result r = Generator.generate(model, tok, prompt, sampled(5L, 12).withLogprobs(5), 1, -1, null).getFirst();
        assertEquals(12, r.tokens().length);
        assertEquals(r.tokens().length, r.logprobs().size(), "one entry per output token");
        float[][] rows = scoreLogits(r.tokens());
        for (int i = 0; i < r.tokens().length; i++) {
            TokenLogprob lp = r.logprobs().get(i);
            assertEquals(r.tokens()[i], lp.token());
            assertEquals(logSoftmax(rows[i], lp.token()), lp.logprob(), 1e-4, "token " + i);
            assertEquals(5, lp.topTokens().length);
            for (int j = 0; j < 5; j++) assertEquals(logSoftmax(rows[i], lp.topTokens()[j]), lp.topLogprobs()[j], 1e-4);
            assertEquals(Sampler.argmax(rows[i]), lp.topTokens()[0], "the first alternative is the most likely token");
        }
    }

    @Test
    void promptLogprobsEqualPrefillLogitsAtEveryPosition() {
        // long enough for several 256-token pieces
        int[] longPrompt = tok.encode("    \"\"\"Return the path of the file.\"\"\"\n".repeat(40));
        assertTrue(longPrompt.length > 520, "prompt of " + longPrompt.length + " tokens");
        Generator.Result r = Generator.generate(model, tok, longPrompt, SamplingParams.greedy(0), 1, 2, null).getFirst();
        assertEquals(0, r.tokens().length, "max_tokens 0: only the prompt is scored");
        assertEquals(longPrompt.length - 1, r.promptLogprobs().size());
        int[] rowsWanted = new int[longPrompt.length - 1];
        for (int i = 0; i < rowsWanted.length; i++) rowsWanted[i] = i;
        float[][] rows = model.prefill(model.newState(), longPrompt, rowsWanted); // score --prefill K --positions 0..K-2
        for (int i = 0; i < rowsWanted.length; i++) {
            TokenLogprob lp = r.promptLogprobs().get(i);
            assertEquals(longPrompt[i + 1], lp.token());
            assertEquals(logSoftmax(rows[i], longPrompt[i + 1]), lp.logprob(), 1e-4, "prompt position " + (i + 1));
            assertEquals(2, lp.topTokens().length);
        }
    }

    @Test
    void choicesAreReproducibleAndEachIsItsOwnSeedsSingleSample() {
        SamplingParams p = sampled(11L, 10);
        List<Generator.Result> a = Generator.generate(model, tok, prompt, p, 4, -1, null);
        List<Generator.Result> b = Generator.generate(model, tok, prompt, p, 4, -1, null);
        assertEquals(4, a.size());
        List<String> texts = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(a.get(i).tokens(), b.get(i).tokens(), "choice " + i + " with the same seed");
            int[] single = Generator.generate(model, tok, prompt, p.forChoice(i), null).tokens();
            assertArrayEquals(single, a.get(i).tokens(), "choice " + i + " equals one sample with its derived seed");
            texts.add(a.get(i).text());
        }
        assertArrayEquals(Generator.generate(model, tok, prompt, p, null).tokens(), a.get(0).tokens(), "choice 0 is n=1's sample");
        assertTrue(texts.stream().distinct().count() > 1, "the choices differ: " + texts);
        assertNotEquals(List.of(a.get(0).tokens()), List.of(a.get(1).tokens()));
    }

    @Test
    void aForkDecodesLikeTheOriginal() {
        SequenceState s = model.newState();
        model.prefill(s, prompt);
        SequenceState f = StateFork.copy(s);
        assertEquals(s.position(), f.position());
        float[] a = model.decode(List.of(s), new int[]{prompt[0]})[0];
        float[] b = model.decode(List.of(f), new int[]{prompt[0]})[0];
        assertArrayEquals(a, b, 0f);
        float[] a2 = model.decode(List.of(s), new int[]{prompt[1]})[0];
        float[] b2 = model.decode(List.of(f), new int[]{prompt[2]})[0];
        assertNotEquals(a2[0], b2[0], "the copy shares nothing with the original");
    }
}
