package io.lightmesh.mesh;

import io.lightmesh.engine.generate.Generation;
import io.lightmesh.engine.generate.SamplingParams;
import io.lightmesh.engine.tokenizer.Tokenizer;
import io.lightmesh.proto.v1.GenerationSpec;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * What the mesh relies on from the engine's {@link Generation}: a generation split across workers produces what
 * one uninterrupted generation does. The prefill worker draws a token from logits after k earlier tokens, the decode
 * worker applies it ({@code acceptChosen}) and continues; after a lost decode worker, another rebuilds the generation
 * from the spec and the k delivered tokens ({@link Specs#resume}). Tokens and released text must be identical for
 * every k, with seeded sampling, the thinking budget forcing its close, and stop strings held back.
 */
class GenerationHandOffTest {
    static Tokenizer tok;

    @BeforeAll
    static void load() throws Exception {
        tok = Tokenizer.load(Path.of("../engine/src/test/resources/fixtures/tokenizer/tokenizer.json"));
    }

    /** Logits of a "model" that opens a reasoning block, then wanders (seeded). */
    static List<float[]> logits(int steps) {
        SplittableRandom r = new SplittableRandom(17);
        List<float[]> out = new ArrayList<>();
        for (int i = 0; i < steps; i++) {
            float[] l = new float[tok.vocabSize()];
            for (int v = 0; v < l.length; v++) l[v] = (float) (r.nextDouble() * 6);
            if (i == 0) l[tok.tokenId("<think>")] = 100;
            l[tok.eosId().orElseThrow()] = -100;
            out.add(l);
        }
        return out;
    }

    record Run(List<Integer> tokens, List<String> texts) {}

    static Run run(Generation g, List<float[]> logits, int from) {
        List<Integer> tokens = new ArrayList<>();
        List<String> texts = new ArrayList<>();
        for (int i = from; i < logits.size() && !g.finished(); i++) {
            Generation.Step s = g.accept(logits.get(i));
            tokens.add(s.token());
            texts.add(s.text());
        }
        return new Run(tokens, texts);
    }

    static GenerationSpec spec(SamplingParams p, List<Integer> generated) {
        return GenerationSpec.newBuilder().setRequestId("r").addAllGeneratedTokens(generated).setSampling(
                io.lightmesh.proto.v1.SamplingParams.newBuilder().setTemperature(p.temperature()).setTopK(p.topK()).setTopP(p.topP())
                        .setSeed(p.seed()).setMaxNewTokens(p.maxNewTokens()).addAllStop(p.stop())
                        .setMaxThinkingTokens(p.maxThinkingTokens()).setIgnoreEos(p.ignoreEos())).build();
    }

    @Test
    void resumedAndHandedOffGenerationsEqualTheUninterruptedOne() {
        SamplingParams p = new SamplingParams(0.9f, 200, 0.95f, 42, 40, List.of("ab", "the"), 4, false);
        assertEquals(p, Specs.sampling(spec(p, List.of()).getSampling()), "the wire form keeps every parameter");
        List<float[]> logits = logits(40);
        Run whole = run(new Generation("r", null, p, tok), logits, 0);
        for (int k = 1; k < whole.tokens().size(); k++) {
            List<Integer> before = whole.tokens().subList(0, k);
            // prefill worker: rebuilt after k tokens, draws token k from its logits
            int drawn = Specs.resume(spec(p, before), null, tok).accept(logits.get(k)).token();
            assertEquals(whole.tokens().get(k), drawn, "token " + k + " drawn on another worker");
            // decode worker: rebuilt after k tokens, applies the drawn token, then continues
            Generation d = Specs.resume(spec(p, before), null, tok);
            Generation.Step first = d.acceptChosen(drawn);
            Run rest = run(d, logits, k + 1);
            List<String> texts = new ArrayList<>(List.of(first.text()));
            texts.addAll(rest.texts());
            assertEquals(whole.texts().subList(k, whole.texts().size()), texts, "text after a hand-off at " + k);
            List<Integer> tokens = new ArrayList<>(List.of(first.token()));
            tokens.addAll(rest.tokens());
            assertEquals(whole.tokens().subList(k, whole.tokens().size()), tokens, "tokens after a hand-off at " + k);
        }
        assertEquals(String.join("", whole.texts()), tok.decode(whole.tokens().stream().mapToInt(Integer::intValue).toArray())
                .substring(0, String.join("", whole.texts()).length()), "the texts are the decoded output");
        System.out.println("hand-off checked at " + (whole.tokens().size() - 1) + " points; output: " + Arrays.toString(whole.tokens().toArray()));
    }
}
