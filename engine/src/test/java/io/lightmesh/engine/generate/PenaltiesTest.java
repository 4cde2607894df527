package io.lightmesh.engine.generate;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Presence, frequency and repetition penalties on hand-computed logits, and their effect on what the sampler picks. */
class PenaltiesTest {

    static TokenHistory history(int[] prompt, int... output) {
        TokenHistory h = new TokenHistory(prompt);
        for (int t : output) h.add(t);
        return h;
    }

    @Test
    void frequencyAndPresenceCountOnlyTheOutput() {
        float[] logits = {1f, 2f, 3f, -1f, 0.5f};
        // output: token 1 twice, token 3 once; the prompt's token 4 is not penalised by these two
        float[] got = new Penalties(0.5f, 0.25f, 1f).apply(logits, history(new int[]{4}, 1, 3, 1));
        // token 1: 2 - 0.25*2 - 0.5 = 1.0; token 3: -1 - 0.25*1 - 0.5 = -1.75
        assertArrayEquals(new float[]{1f, 1.0f, 3f, -1.75f, 0.5f}, got, 1e-6f);
        assertArrayEquals(new float[]{1f, 2f, 3f, -1f, 0.5f}, logits, 0f, "the input is left unchanged");
    }

    @Test
    void negativePenaltiesEncourageRepeats() {
        float[] got = new Penalties(-1f, -0.5f, 1f).apply(new float[]{0f, 0f}, history(new int[0], 1, 1, 1));
        assertArrayEquals(new float[]{0f, 2.5f}, got, 1e-6f); // 0 + 0.5*3 + 1
    }

    @Test
    void repetitionDividesPositiveAndMultipliesNegativeLogitsOfPromptAndOutput() {
        float[] logits = {3f, -2f, 4f, 1f};
        // prompt holds 0 and 1, output holds 2; token 3 unseen
        float[] got = new Penalties(0f, 0f, 2f).apply(logits, history(new int[]{0, 1, 0}, 2));
        assertArrayEquals(new float[]{1.5f, -4f, 2f, 1f}, got, 1e-6f);
    }

    @Test
    void repetitionComesBeforeFrequencyAndPresence() {
        // token 0 seen once in the output: (4 / 2) - 1*1 - 0.5 = 0.5 (the other order would give (4-1.5)/2 = 1.25)
        float[] got = new Penalties(0.5f, 1f, 2f).apply(new float[]{4f}, history(new int[0], 0));
        assertEquals(0.5f, got[0], 1e-6f);
    }

    @Test
    void rangesAreChecked() {
        assertThrows(IllegalArgumentException.class, () -> new Penalties(2.5f, 0f, 1f));
        assertThrows(IllegalArgumentException.class, () -> new Penalties(0f, -2.01f, 1f));
        assertThrows(IllegalArgumentException.class, () -> new Penalties(0f, 0f, 0f));
        assertThrows(IllegalArgumentException.class, () -> new Penalties(0f, 0f, Float.NaN));
        assertFalse(Penalties.NONE.active());
        assertTrue(new Penalties(0f, 0f, 1.1f).active());
    }

    @Test
    void greedyPicksThePenalisedArgmax() {
        SamplingParams p = SamplingParams.greedy(10).withPenalties(new Penalties(0f, 1.5f, 1f));
        Sampler s = new Sampler(p);
        float[] logits = {1f, 2f, 0f};
        assertEquals(1, s.sample(logits, history(new int[0])));
        assertEquals(0, s.sample(logits, history(new int[0], 1)), "2 - 1.5 = 0.5 < 1");
        assertEquals(1, s.sample(logits), "without a history nothing is penalised");
    }

    @Test
    void samplingDistributionFollowsThePenalisedLogits() {
        // logits ln(1), ln(3): p = 1/4, 3/4. With token 1 in the output once and frequency ln(3): both logits 0 -> 1/2 each.
        float ln3 = (float) Math.log(3);
        float[] logits = {0f, ln3};
        int draws = 40_000;
        int plain = 0, penalised = 0;
        Sampler a = new Sampler(new SamplingParams(1f, 0, 1f, 7L, 10, List.of(), 0));
        Sampler b = new Sampler(new SamplingParams(1f, 0, 1f, 7L, 10, List.of(), 0).withPenalties(new Penalties(0f, ln3, 1f)));
        TokenHistory h = history(new int[0], 1);
        for (int i = 0; i < draws; i++) {
            plain += a.sample(logits, h);
            penalised += b.sample(logits, h);
        }
        assertEquals(0.75, plain / (double) draws, 0.01);
        assertEquals(0.5, penalised / (double) draws, 0.01);
    }

    @Test
    void generationCountsItsOutputAndPromptForThePenalties() {
        // repetition penalty 3, the prompt holds token 1; logits fixed at {1, 2.5, 3}
        SamplingParams p = SamplingParams.greedy(3).withPenalties(new Penalties(0f, 0f, 3f));
        Generation g = new Generation("t", null, p, null, new int[]{1});
        float[] logits = {1f, 2.5f, 3f};
        assertEquals(2, g.accept(logits).token()); // seen {1}:       1, 0.833, 3
        assertEquals(0, g.accept(logits).token()); // seen {1, 2}:    1, 0.833, 1   (a tie goes to the lower id)
        assertEquals(2, g.accept(logits).token()); // seen {0, 1, 2}: 0.333, 0.833, 1
        // without the prompt, token 1 is unpenalised at step 2: 1, 2.5, 1
        Generation h = new Generation("t", null, p, null, new int[0]);
        h.accept(logits);
        assertEquals(1, h.accept(logits).token());
    }
}
