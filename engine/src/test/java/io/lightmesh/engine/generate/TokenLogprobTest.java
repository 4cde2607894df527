package io.lightmesh.engine.generate;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Log-softmax and the top alternatives on hand-computed logits; raw logits whatever the sampling. */
class TokenLogprobTest {

    @Test
    void logSoftmaxOfKnownLogits() {
        // probabilities 1/8, 2/8, 4/8, 1/8
        float[] logits = {0f, (float) Math.log(2), (float) Math.log(4), 0f};
        TokenLogprob t = TokenLogprob.of(logits, 1, 3);
        assertEquals(Math.log(0.25), t.logprob(), 1e-6);
        assertArrayEquals(new int[]{2, 1, 0}, t.topTokens(), "most likely first; the tie 0/3 goes to the lower id");
        assertArrayEquals(new float[]{(float) Math.log(0.5), (float) Math.log(0.25), (float) Math.log(0.125)}, t.topLogprobs(), 1e-6f);
    }

    @Test
    void shiftInvariantAndStableForLargeLogits() {
        float[] logits = {1000f, 1000f};
        assertEquals(Math.log(0.5), TokenLogprob.of(logits, 0, 0).logprob(), 1e-6);
        assertEquals(0, TokenLogprob.of(logits, 0, 0).topTokens().length);
    }

    @Test
    void topIsBoundedAndChecked() {
        assertThrows(IllegalArgumentException.class, () -> TokenLogprob.of(new float[4], 0, 21));
        assertThrows(IllegalArgumentException.class, () -> TokenLogprob.of(new float[4], 4, 1));
        assertEquals(4, TokenLogprob.of(new float[4], 0, 20).topTokens().length, "at most the vocabulary");
    }

    @Test
    void generationReportsRawLogprobsWhateverTheTemperatureAndPenalties() {
        float[] logits = {0f, (float) Math.log(3)};
        SamplingParams p = new SamplingParams(0.3f, 1, 1f, 1L, 4, java.util.List.of(), 0)
                .withPenalties(new Penalties(2f, 2f, 5f)).withLogprobs(2);
        Generation g = new Generation("t", null, p, null, new int[]{1});
        Generation.Step s = g.accept(logits);
        assertEquals(1, s.token(), "top_k 1 keeps the argmax");
        assertEquals(Math.log(0.75), s.logprob().logprob(), 1e-6, "log-softmax of the logits as given");
        assertArrayEquals(new int[]{1, 0}, s.logprob().topTokens());
        assertNull(new Generation("t", null, SamplingParams.greedy(2), null).accept(logits).logprob(), "not asked for");
    }

    @Test
    void choiceSeedsAreStableAndDistinct() {
        assertEquals(42L, SamplingParams.choiceSeed(42L, 0));
        assertEquals(SamplingParams.choiceSeed(42L, 3), SamplingParams.choiceSeed(42L, 3));
        java.util.Set<Long> seen = new java.util.HashSet<>();
        for (int i = 0; i < 16; i++) seen.add(SamplingParams.choiceSeed(42L, i));
        assertEquals(16, seen.size());
    }
}
