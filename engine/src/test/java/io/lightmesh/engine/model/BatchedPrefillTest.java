package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.backend.VectorOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Supplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Batched prefill ({@link MiniMaxModel#prefill(List, List, int)}: several sequences of ragged lengths, some
 * continuing a state, side by side in shared forward steps, long prompts cut across steps) against each sequence
 * prefilled alone: the same last-token logits and the same states, within 1e-5 of the largest magnitude, on the
 * reference and the Vector API backends.
 */
class BatchedPrefillTest {
    static final double TOL = 1e-5;
    @TempDir static Path dir;

    /** Lengths around the block (16): single tokens, part blocks, many blocks, longer than a step of 128. */
    static final int[] LENGTHS = {1, 5, 16, 37, 300, 2, 129};

    @Test
    void referenceBackend() throws Exception { check(ReferenceOps::new); }

    @Test
    void vectorBackend() throws Exception { check(VectorOps::new); }

    void check(Supplier<TensorOps> backend) throws Exception {
        Path model = dir.resolve("model");
        if (!model.resolve("config.json").toFile().exists()) SyntheticCheckpoint.write(model, SyntheticCheckpoint.Shape.tiny(), DType.F32, 17, false);
        try (TensorOps ops = backend.get(); MiniMaxModel m = MiniMaxModel.load(model, ops)) {
            SplittableRandom r = new SplittableRandom(5);
            List<int[]> prompts = new ArrayList<>();
            for (int len : LENGTHS) prompts.add(r.ints(len, 0, 512).toArray());
            int[] history = r.ints(21, 0, 512).toArray(); // sequence 3 continues a state that already holds 21 tokens

            List<SequenceState> alone = new ArrayList<>(), batched = new ArrayList<>();
            for (int i = 0; i < prompts.size(); i++) {
                SequenceState a = m.newState(), b = m.newState();
                if (i == 3) { m.prefill(a, history); m.prefill(b, history); }
                alone.add(a);
                batched.add(b);
            }
            float[][] expected = new float[prompts.size()][];
            for (int i = 0; i < prompts.size(); i++) expected[i] = m.prefill(alone.get(i), prompts.get(i));
            // steps of 128 rows: 490 tokens make four steps, the 300- and 129-token prompts cross step boundaries
            float[][] got = m.prefill(batched, prompts, 128);

            for (int i = 0; i < prompts.size(); i++) {
                String what = "sequence " + i + " (" + LENGTHS[i] + " tokens)";
                assertClose(expected[i], got[i], what + " logits");
                assertEquals(alone.get(i).position(), batched.get(i).position(), what + " position");
                assertStatesClose(m.config(), alone.get(i), batched.get(i), what);
            }
            // and they go on alike: one decode step for all, batched, against each alone
            int[] next = new int[prompts.size()];
            Arrays.fill(next, 7);
            float[][] b = m.decode(batched, next);
            for (int i = 0; i < prompts.size(); i++) assertClose(m.decode(List.of(alone.get(i)), new int[]{7})[0], b[i], "decode after " + i);
        }
    }

    @Test
    void aBadPromptLeavesEveryStateUntouched() throws Exception {
        Path model = dir.resolve("bad");
        SyntheticCheckpoint.write(model, SyntheticCheckpoint.Shape.tiny(), DType.F32, 17, false);
        try (MiniMaxModel m = MiniMaxModel.load(model, new ReferenceOps())) {
            SequenceState a = m.newState(), b = m.newState();
            var e = assertThrows(IllegalArgumentException.class, () -> m.prefill(List.of(a, b), List.of(new int[]{1, 2, 3}, new int[]{4, 512})));
            assertTrue(e.getMessage().contains("512"), e.getMessage());
            assertEquals(0, a.position());
            assertEquals(0, b.position());
            assertThrows(IllegalArgumentException.class, () -> m.prefill(List.of(a, a), List.of(new int[]{1}, new int[]{2})));
        }
    }

    static void assertStatesClose(ModelConfig c, SequenceState want, SequenceState got, String what) {
        for (int l = 0; l < c.numLayers(); l++) {
            if (c.isSoftmax(l)) {
                KvCache x = want.kvCache(l), y = got.kvCache(l);
                assertEquals(x.length(), y.length(), what + " layer " + l + " KV length");
                int n = x.length() * x.rowWidth();
                assertClose(Arrays.copyOf(x.keys(), n), Arrays.copyOf(y.keys(), n), what + " layer " + l + " K");
                assertClose(Arrays.copyOf(x.values(), n), Arrays.copyOf(y.values(), n), what + " layer " + l + " V");
            } else {
                assertClose(want.lightningState(l), got.lightningState(l), what + " layer " + l + " S");
            }
        }
    }

    static void assertClose(float[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what + ": length");
        double scale = 0, maxErr = 0;
        for (float v : expected) scale = Math.max(scale, Math.abs(v));
        for (int i = 0; i < expected.length; i++) maxErr = Math.max(maxErr, Math.abs(expected[i] - actual[i]));
        double rel = maxErr / Math.max(scale, 1e-30);
        assertTrue(rel <= TOL, what + ": max error relative to max magnitude " + rel + " > " + TOL);
    }
}
