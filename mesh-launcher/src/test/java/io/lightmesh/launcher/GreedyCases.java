package io.lightmesh.launcher;

import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Seeded prompts and the in-process engine's greedy answers to them: what the elastic pool tests hold every mesh
 * answer to. Prompt {@code i} is {@code firstLength + i * lengthStep} token ids drawn from {@code SplittableRandom(seed + i)}
 * over the synthetic checkpoints' first 512 ids.
 */
record GreedyCases(List<int[]> prompts, List<List<Integer>> expected, int maxNew) {

    static GreedyCases seeded(MiniMaxModel model, long seed, int count, int firstLength, int lengthStep, int maxNew) {
        List<int[]> prompts = new ArrayList<>();
        List<List<Integer>> expected = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            int[] p = prompt(seed + i, firstLength + lengthStep * i);
            prompts.add(p);
            expected.add(engine(model, null, p, maxNew));
        }
        return new GreedyCases(List.copyOf(prompts), List.copyOf(expected), maxNew);
    }

    /** {@code length} token ids from {@code SplittableRandom(seed)} over the first 512 ids. */
    static int[] prompt(long seed, int length) { return new SplittableRandom(seed).ints(length, 0, 512).toArray(); }

    /** What the engine's Generator answers in-process (experts local, no batching), greedy, {@code maxNew} tokens. */
    static List<Integer> engine(MiniMaxModel model, io.lightmesh.engine.tokenizer.Tokenizer tokenizer, int[] prompt, int maxNew) {
        int[] t = Generator.generate(model, tokenizer, prompt, io.lightmesh.engine.generate.SamplingParams.greedy(maxNew), null).tokens();
        return Arrays.stream(t).boxed().toList();
    }

    int size() { return prompts.size(); }

    /** The mesh request for case {@code k}: greedy, {@link #maxNew} tokens, no stop on EOS (as the engine ran it). */
    GenerateRequest request(int k) { return greedy(prompts.get(k), maxNew); }

    static GenerateRequest greedy(int[] prompt, int maxNew) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int t : prompt) ids.addIds(t);
        return GenerateRequest.newBuilder().setTokenIds(ids).setReturnTokenIds(true)
                .setSampling(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(maxNew).setIgnoreEos(true)).build();
    }
}
