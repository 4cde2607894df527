package io.lightmesh.engine.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.generate.SamplingParams;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The engine against Hugging Face transformers 5.17: fixtures written by tools/reference/make_fixtures.py on the
 * GPU machine (small MiniMax models in both config dialects, f32 and bf16 weights, single and sharded files,
 * partial and full RoPE). Prefill logits over several lightning blocks, cached decode logits, greedy tokens.
 *
 * <p>Tolerance: max |engine - HF| / max |HF logit| <= 1e-4 for every compared row (fp32 math on both sides; the
 * differences are summation order). Greedy tokens must be identical.
 */
class ReferenceFixturesTest {
    static final double TOL = 1e-4;
    static final Path ROOT = Path.of("src/test/resources/fixtures");

    static Stream<Path> cases() throws IOException {
        List<Path> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(ROOT)) {
            s.filter(p -> Files.exists(p.resolve("expected.json"))).sorted().forEach(out::add);
        }
        Path demo = Path.of("../models/demo");
        if (Files.exists(demo.resolve("expected.json"))) out.add(demo);
        return out.stream();
    }

    @Test
    void fixturesArePresent() throws IOException {
        assertTrue(cases().count() >= 3, "expected at least 3 reference fixture cases under " + ROOT.toAbsolutePath());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void prefillDecodeAndGreedyMatchHuggingFace(Path dir) throws IOException {
        check(dir, new ReferenceOps());
    }

    /** Shared with other backends' tests: the same fixtures, the same tolerance. */
    static void check(Path dir, TensorOps ops) throws IOException {
        check(dir, ops, TOL, true);
    }

    /** As {@link #check(Path, TensorOps)}, on {@code variant} of the loaded model (other experts, micro-batching). */
    static void check(Path dir, TensorOps ops, java.util.function.UnaryOperator<MiniMaxModel> variant) throws IOException {
        check(dir, ops, TOL, true, variant);
    }

    /**
     * The fixture's prefill rows and cached decode steps within {@code tol} (max |diff| / max |reference| per row),
     * and, when {@code greedy}, the greedy tokens identical. Returns the largest errors seen: {prefill, decode}.
     */
    static double[] check(Path dir, TensorOps ops, double tol, boolean greedy) throws IOException {
        return check(dir, ops, tol, greedy, m -> m);
    }

    static double[] check(Path dir, TensorOps ops, double tol, boolean greedy, java.util.function.UnaryOperator<MiniMaxModel> variant) throws IOException {
        double[] worst = new double[2];
        JsonNode exp = new ObjectMapper().readTree(dir.resolve("expected.json").toFile());
        int[] prompt = ints(exp.get("prompt_ids"));
        try (MiniMaxModel base = MiniMaxModel.load(dir, ops)) {
            MiniMaxModel model = variant.apply(base);
            assertEquals(ops.resident() != null, model.decodesOnDevice(), "decode path of " + ops.name());
            // prefill logits at the recorded rows, from one prefill call
            List<Integer> rows = new ArrayList<>();
            List<float[]> expected = new ArrayList<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = exp.get("prefill_logits").properties().iterator(); it.hasNext(); ) {
                var e = it.next();
                rows.add(Integer.parseInt(e.getKey()));
                expected.add(floats(e.getValue()));
            }
            SequenceState s = model.newState();
            float[][] got = model.prefill(s, prompt, rows.stream().mapToInt(Integer::intValue).toArray());
            for (int i = 0; i < rows.size(); i++) {
                worst[0] = Math.max(worst[0], assertClose(expected.get(i), got[i], dir.getFileName() + " prefill row " + rows.get(i), tol));
            }
            // cached decode, one token at a time
            int[] decodeIds = ints(exp.get("decode_ids"));
            JsonNode decodeLogits = exp.get("decode_logits");
            for (int i = 0; i < decodeIds.length; i++) {
                float[] l = model.decode(List.of(s), new int[]{decodeIds[i]})[0];
                worst[1] = Math.max(worst[1], assertClose(floats(decodeLogits.get(i)), l, dir.getFileName() + " decode step " + i, tol));
            }
            // greedy continuation
            if (greedy) {
                int[] ids = ints(exp.get("greedy_ids"));
                Generator.Result r = Generator.generate(model, null, prompt, SamplingParams.greedy(ids.length), null);
                assertArrayEquals(ids, r.tokens(), dir.getFileName() + " greedy tokens");
            }
        }
        return worst;
    }

    static double assertClose(float[] expected, float[] actual, String what) { return assertClose(expected, actual, what, TOL); }

    /** Checks max |diff| / max |expected| <= tol and returns it. */
    static double assertClose(float[] expected, float[] actual, String what, double tol) {
        assertEquals(expected.length, actual.length, what + ": vocab");
        double scale = 0, maxErr = 0;
        for (float v : expected) scale = Math.max(scale, Math.abs(v));
        for (int i = 0; i < expected.length; i++) maxErr = Math.max(maxErr, Math.abs(expected[i] - actual[i]));
        assertTrue(maxErr / scale <= tol, what + ": max |diff| " + maxErr + " relative " + maxErr / scale + " > " + tol);
        return maxErr / scale;
    }

    static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asInt();
        return out;
    }

    static float[] floats(JsonNode a) {
        float[] out = new float[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = (float) a.get(i).asDouble();
        return out;
    }
}
