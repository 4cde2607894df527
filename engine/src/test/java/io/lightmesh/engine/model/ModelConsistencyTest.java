package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The engine's paths against each other on a seeded random model: block-form prefill vs the recurrence, chunked vs
 * one-shot prefill, batched vs single decode, and a state shipped through its serialised form.
 */
class ModelConsistencyTest {
    /** fp32 paths that differ only in summation order. */
    static final double TOL = 1e-4;

    @TempDir static Path dir;
    static MiniMaxModel model;
    static int[] prompt;

    @BeforeAll
    static void load() throws Exception {
        SyntheticCheckpoint.write(dir, SyntheticCheckpoint.Shape.tiny(), DType.F32, 7, false);
        model = MiniMaxModel.load(dir, new ReferenceOps());
        prompt = new SplittableRandom(3).ints(53, 0, 512).toArray(); // 3 blocks of 16 and a ragged one
    }

    @AfterAll
    static void close() { model.close(); }

    @Test
    void decodeOneTokenAtATimeEqualsPrefillLogits() {
        int[] rows = {0, 15, 16, 31, 40, 52};
        float[][] expected = model.prefill(model.newState(), prompt, rows);
        SequenceState s = model.newState();
        int next = 0;
        for (int t = 0; t < prompt.length; t++) {
            float[] logits = model.decode(List.of(s), new int[]{prompt[t]})[0];
            if (next < rows.length && rows[next] == t) assertClose(expected[next++], logits, "row " + t);
        }
        assertEquals(prompt.length, s.position());
    }

    @Test
    void chunkedPrefillEqualsOneShot() {
        float[] oneShot = model.prefill(model.newState(), prompt);
        SequenceState s = model.newState();
        model.prefill(s, java.util.Arrays.copyOfRange(prompt, 0, 20));  // ends mid-block
        model.prefill(s, java.util.Arrays.copyOfRange(prompt, 20, 37));
        float[] chunked = model.prefill(s, java.util.Arrays.copyOfRange(prompt, 37, prompt.length));
        assertClose(oneShot, chunked, "chunked");
    }

    @Test
    void batchedDecodeEqualsSingleSequences() {
        int[][] prompts = {java.util.Arrays.copyOf(prompt, 5), java.util.Arrays.copyOf(prompt, 33), prompt};
        SequenceState[] batched = new SequenceState[3], single = new SequenceState[3];
        for (int i = 0; i < 3; i++) {
            model.prefill(batched[i] = model.newState(), prompts[i]);
            model.prefill(single[i] = model.newState(), prompts[i]);
        }
        int[] tokens = {11, 200, 499};
        float[][] b = model.decode(List.of(batched), tokens);
        for (int i = 0; i < 3; i++) {
            float[] one = model.decode(List.of(single[i]), new int[]{tokens[i]})[0];
            assertClose(one, b[i], "sequence " + i);
        }
    }

    @Test
    void stateSurvivesSerialisation() throws Exception {
        SequenceState s = model.newState();
        model.prefill(s, prompt);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        s.writeTo(new DataOutputStream(bytes));
        SequenceState restored = SequenceState.readFrom(
                new DataInputStream(new ByteArrayInputStream(bytes.toByteArray())), model.config());
        assertEquals(s.position(), restored.position());
        assertEquals(s.byteSize(), restored.byteSize());
        float[] a = model.decode(List.of(s), new int[]{42})[0];
        float[] b = model.decode(List.of(restored), new int[]{42})[0];
        assertClose(a, b, "restored");
        assertTrue(java.util.Arrays.equals(a, b), "same state, same math: bit-identical");
    }

    @Test
    void badTokenIsAClearError() {
        var e = assertThrows(IllegalArgumentException.class, () -> model.prefill(model.newState(), new int[]{1, 512}));
        assertTrue(e.getMessage().contains("512"), e.getMessage());
    }

    static void assertClose(float[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what + ": length");
        double maxRel = 0, scale = 0;
        for (float v : expected) scale = Math.max(scale, Math.abs(v));
        for (int i = 0; i < expected.length; i++) {
            double err = Math.abs(expected[i] - actual[i]) / Math.max(scale, 1e-6);
            maxRel = Math.max(maxRel, err);
        }
        assertTrue(maxRel <= TOL, what + ": max error relative to max |logit| " + maxRel + " > " + TOL);
    }
}
