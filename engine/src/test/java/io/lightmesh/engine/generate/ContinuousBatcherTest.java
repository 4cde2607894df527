package io.lightmesh.engine.generate;

import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.opencl.OpenClTestSupport;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A batch of greedy, sampled (top-k, top-p, plain temperature, penalties) and log-probability generations stepped
 * together, the sampled rows drawn in parallel, gives each the tokens it gets alone ({@link Generator}), and the
 * listener sees every row's steps in order; the batcher counts the rows that needed their logits. On the host and on
 * the device path (the greedy row by the device's argmax, the others' logits read row by row).
 */
class ContinuousBatcherTest {
    @TempDir static Path dir;

    @ParameterizedTest
    @ValueSource(strings = {"reference", "opencl"})
    void aMixedBatchGivesWhatEachGenerationGivesAlone(String backend) throws Exception {
        Path p = dir.resolve("tiny");
        SyntheticCheckpoint.write(p, SyntheticCheckpoint.Shape.tiny(), DType.F32, 21, true);
        List<SamplingParams> params = List.of(SamplingParams.greedy(9),
                new SamplingParams(0.8f, 0, 1f, 11, 9, List.of(), 0, true),
                new SamplingParams(1.1f, 20, 1f, 12, 9, List.of(), 0, true),
                new SamplingParams(0.9f, 0, 0.9f, 13, 9, List.of(), 0, true),
                new SamplingParams(0.7f, 5, 0.8f, 14, 9, List.of(), 0, true),
                new SamplingParams(1f, 0, 1f, 15, 9, List.of(), 0, true).withPenalties(new Penalties(0.4f, 0.2f, 1.1f)),
                SamplingParams.greedy(9).withLogprobs(2),
                new SamplingParams(0.6f, 0, 0.95f, 16, 9, List.of(), 0, true));
        // opencl: the device path, whose step reads back the argmax of every row and the logits of the 7 rows asking
        try (MiniMaxModel model = MiniMaxModel.load(p, backend.equals("opencl") ? OpenClTestSupport.ops() : new ReferenceOps())) {
            assertEquals(backend.equals("opencl"), model.decodesOnDevice());
            SplittableRandom rnd = new SplittableRandom(3);
            List<int[]> prompts = new ArrayList<>();
            for (int i = 0; i < params.size(); i++) prompts.add(rnd.ints(4 + i, 0, 512).toArray());
            Map<String, List<Integer>> seen = new HashMap<>();
            int[] maxLogitRows = {0};
            ContinuousBatcher batcher = new ContinuousBatcher(model, 8, (g, s) -> {
                if (s.token() >= 0) seen.computeIfAbsent(g.id(), k -> new ArrayList<>()).add(s.token());
            });
            for (int i = 0; i < params.size(); i++) {
                SequenceState s = model.newState();
                float[] last = model.prefill(s, prompts.get(i));
                Generation g = new Generation("g" + i, s, params.get(i), null, prompts.get(i));
                Generation.Step first = g.accept(last);
                seen.computeIfAbsent(g.id(), k -> new ArrayList<>()).add(first.token());
                batcher.add(g);
            }
            while (!batcher.idle()) {
                batcher.step();
                maxLogitRows[0] = Math.max(maxLogitRows[0], batcher.lastLogitRows());
            }
            assertEquals(7, maxLogitRows[0], "the sampled, penalised and log-probability rows; the greedy row takes the argmax");
            for (int i = 0; i < params.size(); i++) {
                int[] alone = Generator.generate(model, null, prompts.get(i), params.get(i), null).tokens();
                int[] batched = seen.get("g" + i).stream().mapToInt(Integer::intValue).toArray();
                assertArrayEquals(alone, batched, "generation " + i + " " + params.get(i));
                assertTrue(batched.length == 9, "ignore_eos: 9 tokens");
            }
        }
    }
}
