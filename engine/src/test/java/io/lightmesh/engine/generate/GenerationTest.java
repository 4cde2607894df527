package io.lightmesh.engine.generate;

import io.lightmesh.engine.tokenizer.Tokenizer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Stop rules, streaming text and the thinking budget, driven by scripted logits (one-hot on the token the "model"
 * wants next) with the HF-trained fixture tokenizer.
 */
class GenerationTest {
    static Tokenizer tok;

    @BeforeAll
    static void load() throws Exception {
        tok = Tokenizer.load(Path.of("src/test/resources/fixtures/tokenizer/tokenizer.json"));
    }

    /** Feeds the scripted tokens as one-hot logits until the generation finishes; returns the streamed text. */
    static String drive(Generation g, int[] script, List<Integer> chosen) {
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < script.length && !g.finished(); i++) {
            float[] logits = new float[tok.vocabSize()];
            logits[script[i]] = 10f;
            Generation.Step s = g.accept(logits);
            if (s.token() >= 0) chosen.add(s.token());
            text.append(s.text());
        }
        return text.toString();
    }

    static int[] concat(int[]... parts) {
        return java.util.Arrays.stream(parts).flatMapToInt(java.util.Arrays::stream).toArray();
    }

    /**
     * A greedy generation that takes the step's argmax where it needs no logits ({@link Generation#needsLogits}) gives
     * the tokens and text of one fed every step's logits, through the thinking budget's forced close and the barred
     * second {@code </think>} (where it asks for the logits again); sampled, penalised and log-probability
     * generations always ask.
     */
    @Test
    void argmaxStepsGiveWhatTheLogitsGive() {
        int open = tok.tokenId("<think>"), close = tok.tokenId("</think>"), eos = tok.eosId().orElseThrow();
        int hmm = tok.encode(" hmm")[0], answer = tok.encode("42")[0];
        SamplingParams p = new SamplingParams(0f, 0, 1f, 0, 40, List.of(), 3);
        Generation full = new Generation("a", null, p, tok), lean = new Generation("b", null, p, tok);
        List<Integer> chosen = new ArrayList<>();
        int leanArgmax = 0, leanLogits = 0;
        boolean askedAfterClose = false;
        while (!full.finished() && chosen.size() < 30) {
            float[] logits = new float[tok.vocabSize()]; // a model that thinks on, then wants to close its thought again
            if (chosen.isEmpty()) logits[open] = 10f;
            else if (chosen.size() < 10) { logits[hmm] = 10f; logits[close] = 9f; }
            else if (chosen.size() < 12) { logits[close] = 10f; logits[answer] = 5f; }
            else logits[eos] = 10f;
            Generation.Step a = full.accept(logits);
            boolean needs = lean.needsLogits();
            if (needs) leanLogits++;
            else leanArgmax++;
            if (needs && chosen.size() >= 10) askedAfterClose = true;
            Generation.Step b = needs ? lean.accept(logits) : lean.acceptArgmax(Sampler.argmax(logits));
            assertEquals(a.token(), b.token(), "step " + chosen.size());
            assertEquals(a.text(), b.text());
            assertEquals(a.finished(), b.finished());
            if (a.token() != eos) chosen.add(a.token());
        }
        assertTrue(lean.finished());
        assertArrayEquals(full.tokens(), lean.tokens());
        assertTrue(leanArgmax > 0 && leanLogits > 0 && askedAfterClose,
                "argmax steps " + leanArgmax + ", logit steps " + leanLogits + " (the barred </think> needs the logits)");
        assertFalse(new Generation("g", null, SamplingParams.greedy(5), tok).needsLogits());
        assertTrue(new Generation("s", null, new SamplingParams(0.7f, 0, 1f, 1, 5, List.of(), 0), tok).needsLogits());
        assertTrue(new Generation("p", null, SamplingParams.greedy(5).withPenalties(new Penalties(0.5f, 0f, 1f)), tok).needsLogits());
        assertTrue(new Generation("l", null, SamplingParams.greedy(5).withLogprobs(0), tok).needsLogits());
        Generation sampled = new Generation("x", null, new SamplingParams(0.7f, 0, 1f, 1, 5, List.of(), 0), tok);
        assertThrows(IllegalStateException.class, () -> sampled.acceptArgmax(3));
    }

    @Test
    void eosEndsTheTurnAndIsNotOutput() {
        int eos = tok.eosId().orElseThrow();
        int[] hello = tok.encode("Hello there");
        Generation g = new Generation("t", null, SamplingParams.greedy(100), tok);
        String text = drive(g, concat(hello, new int[]{eos}, tok.encode("never")), new ArrayList<>());
        assertEquals("Hello there", text);
        assertEquals(FinishReason.STOP, g.finishReason());
        assertArrayEquals(hello, g.tokens());
    }

    @Test
    void tokenLimitGivesLength() {
        int[] script = tok.encode("one two three four five six seven eight nine ten");
        Generation g = new Generation("t", null, SamplingParams.greedy(4), tok);
        drive(g, script, new ArrayList<>());
        assertEquals(FinishReason.LENGTH, g.finishReason());
        assertEquals(4, g.tokens().length);
    }

    @Test
    void stopStringCutsTheTextAndHeldPrefixesAreReleased() {
        SamplingParams p = new SamplingParams(0f, 0, 1f, 0, 100, List.of("STOP!"), 0);
        Generation g = new Generation("t", null, p, tok);
        // "ST" looks like the start of the stop string, then turns out not to be
        String text = drive(g, tok.encode("a STAR is STOP! hidden"), new ArrayList<>());
        assertEquals("a STAR is ", text);
        assertEquals(FinishReason.STOP, g.finishReason());
    }

    @Test
    void multiByteCharactersStreamWhole() {
        String s = "naïve café 🎉 日本";
        Generation g = new Generation("t", null, SamplingParams.greedy(100), tok);
        StringBuilder seen = new StringBuilder();
        for (int id : tok.encode(s)) {
            float[] logits = new float[tok.vocabSize()];
            logits[id] = 1f;
            String piece = g.accept(logits).text();
            assertFalse(piece.contains("\uFFFD"), "no replacement characters mid-stream: " + piece);
            seen.append(piece);
        }
        g.cancel();
        assertEquals(s, seen.toString());
    }

    @Test
    void thinkingBudgetForcesTheCloseAndTheAnswerContinues() {
        int open = tok.tokenId("<think>"), close = tok.tokenId("</think>"), eos = tok.eosId().orElseThrow();
        assertTrue(open >= 0 && close >= 0, "fixture tokenizer has <think> and </think>");
        int hmm = tok.encode(" hmm")[0];
        int[] answer = tok.encode("42");
        int budget = 5;
        Generation g = new Generation("t", null, new SamplingParams(0f, 0, 1f, 0, 200, List.of(), budget), tok);
        // a "model" that would think forever: it only answers once </think> is in its output
        List<Integer> chosen = new ArrayList<>();
        StringBuilder text = new StringBuilder();
        int answered = 0;
        while (!g.finished() && chosen.size() < 100) {
            int want = chosen.isEmpty() ? open : !chosen.contains(close) ? hmm
                    : answered < answer.length ? answer[answered] : eos;
            float[] logits = new float[tok.vocabSize()];
            logits[want] = 10f;
            Generation.Step s = g.accept(logits);
            if (s.token() != eos) chosen.add(s.token());
            if (answered < answer.length && s.token() == answer[answered]) answered++; // forced tokens ignore the script
            text.append(s.text());
        }
        int[] forcedClose = tok.encode("\n</think>\n");
        int[] hmms = new int[budget];
        java.util.Arrays.fill(hmms, hmm);
        int[] expected = concat(new int[]{open}, hmms, forcedClose, answer);
        assertArrayEquals(expected, chosen.stream().mapToInt(Integer::intValue).toArray(),
                "budget of " + budget + " thinking tokens, then the forced close, then the answer");
        assertEquals(FinishReason.STOP, g.finishReason());
        assertEquals(tok.decode(expected), text.toString());
    }

    @Test
    void reasoningClosedByTheBudgetIsNotClosedAgain() {
        int open = tok.tokenId("<think>"), close = tok.tokenId("</think>"), eos = tok.eosId().orElseThrow();
        int hmm = tok.encode(" hmm")[0];
        int answer = tok.encode("42")[0];
        int[] forcedClose = tok.encode("\n</think>\n");
        for (int budget : new int[] {0, 3}) {
            Generation g = new Generation("t", null, new SamplingParams(0f, 0, 1f, 0, 40, List.of(), budget), tok);
            // a "model" cut short mid-thought that wants to finish it and close it (again): </think> first, the answer second
            List<Integer> chosen = new ArrayList<>();
            while (!g.finished() && chosen.size() < 30) {
                float[] logits = new float[tok.vocabSize()];
                if (chosen.isEmpty()) logits[open] = 10f;
                else if (chosen.size() < 1 + 3 + forcedClose.length) { logits[hmm] = 10f; logits[close] = 9f; }
                else if (chosen.size() < 1 + 3 + forcedClose.length + 2) { logits[close] = 10f; logits[answer] = 5f; }
                else logits[eos] = 10f;
                Generation.Step s = g.accept(logits);
                if (s.token() != eos) chosen.add(s.token());
            }
            long closes = chosen.stream().filter(t -> t == close).count();
            if (budget == 0) {
                // no budget: nothing forced, nothing banned: the model closes when it wants to
                assertEquals(2, closes, "an unbudgeted model's tags are its own: " + chosen);
            } else {
                assertEquals(1, closes, "only the forced </think>: " + chosen);
                int[] expected = concat(new int[]{open, hmm, hmm, hmm}, forcedClose, new int[]{answer, answer});
                assertArrayEquals(expected, chosen.stream().mapToInt(Integer::intValue).toArray());
            }
        }
    }

    @Test
    void seededSamplingIsReproducible() {
        float[] logits = new float[tok.vocabSize()];
        java.util.SplittableRandom r = new java.util.SplittableRandom(1);
        for (int i = 0; i < logits.length; i++) logits[i] = (float) r.nextGaussian();
        SamplingParams p = new SamplingParams(1.0f, 50, 0.9f, 1234, 100, List.of(), 0);
        int[] a = sampleMany(new Sampler(p), logits), b = sampleMany(new Sampler(p), logits);
        assertArrayEquals(a, b);
        int[] c = sampleMany(new Sampler(new SamplingParams(1.0f, 50, 0.9f, 99, 100, List.of(), 0)), logits);
        assertNotEquals(java.util.Arrays.toString(a), java.util.Arrays.toString(c));
        // top-k 1 is greedy whatever the seed
        int[] greedy = sampleMany(new Sampler(new SamplingParams(1.0f, 1, 1f, 5, 100, List.of(), 0)), logits);
        for (int t : greedy) assertEquals(Sampler.argmax(logits), t);
    }

    @Test
    void badParamsAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(-1f, 0, 1f, 0, 10, List.of(), 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1f, 0, 0f, 0, 10, List.of(), 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1f, 0, 1f, 0, 10, List.of(""), 0));
    }

    private static int[] sampleMany(Sampler s, float[] logits) {
        int[] out = new int[64];
        for (int i = 0; i < out.length; i++) out[i] = s.sample(logits);
        return out;
    }
}
