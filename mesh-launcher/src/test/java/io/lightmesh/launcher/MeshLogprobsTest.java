package io.lightmesh.launcher;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.generate.Penalties;
import io.lightmesh.engine.generate.TokenLogprob;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tokenizer.Tokenizer;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.Choice;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Log-probabilities, prompt log-probabilities, several choices and penalties through the mesh (real Kafka, real gRPC,
 * remote experts) on the demo model: every number equals what the engine computes in-process ({@code ./lightmesh
 * score}'s logits after a log-softmax, {@link Generator}'s tokens), and seeded choices come back the same every time.
 */
class MeshLogprobsTest {
    static final Path DEMO = Path.of("../models/demo");

    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    @RegisterExtension static final TestMesh running = new TestMesh();
    static EmbeddedMesh mesh;
    static InferenceGrpc.InferenceBlockingStub client;
    static Tokenizer tok;
    static MiniMaxModel model;
    static int[] prompt;

    @BeforeAll
    static void start() throws Exception {
        mesh = running.ready(EmbeddedMesh.start(new EmbeddedMesh.Options(DEMO, "127.0.0.1", 0, -1, kafka.bootstrapServers(), dir, 2, 1, 1,
                1L << 30, 16, "lightmesh.requests.v1", 64, 64, "vector")));
        client = InferenceGrpc.newBlockingStub(running.channel()).withDeadlineAfter(120, TimeUnit.SECONDS);
        tok = mesh.model().tokenizer();
        model = mesh.model().model();
        prompt = tok.encode("def parse(path):\n    \"\"\"Return the");
    }

    static GenerateRequest.Builder request(SamplingParams.Builder s) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int t : prompt) ids.addIds(t);
        return GenerateRequest.newBuilder().setTokenIds(ids).setReturnTokenIds(true).setSampling(s);
    }

    static SamplingParams.Builder sampled(long seed, int max) {
        return SamplingParams.newBuilder().setTemperature(0.9f).setSeed(seed).setMaxNewTokens(max).setIgnoreEos(true);
    }

    static io.lightmesh.engine.generate.SamplingParams engineSampled(long seed, int max) {
        return new io.lightmesh.engine.generate.SamplingParams(0.9f, 0, 1f, seed, max, List.of(), 0, true);
    }

    static double logSoftmax(float[] logits, int token) { return logits[token] - TokenLogprob.logSumExp(logits); }

    /** score's logits for a generation: the prompt's last row, then each generated token through decode. */
    static float[][] scoreLogits(List<Integer> generated) {
        SequenceState s = model.newState();
        float[][] rows = new float[generated.size()][];
        rows[0] = model.prefill(s, prompt);
        for (int i = 1; i < rows.length; i++) rows[i] = model.decode(List.of(s), new int[]{generated.get(i - 1)})[0];
        return rows;
    }

    static void assertMatchesScore(List<Integer> generated, List<io.lightmesh.proto.v1.TokenLogprob> lps, int top) {
        assertEquals(generated.size(), lps.size(), "one log-probability per token");
        float[][] rows = scoreLogits(generated);
        for (int i = 0; i < rows.length; i++) {
            io.lightmesh.proto.v1.TokenLogprob lp = lps.get(i);
            assertEquals((int) generated.get(i), lp.getTokenId());
            assertEquals(logSoftmax(rows[i], lp.getTokenId()), lp.getLogprob(), 1e-4, "token " + i);
            assertEquals(tok.decode(new int[]{lp.getTokenId()}), lp.getToken(), "the router names the token");
            assertArrayEquals(tok.bytesOf(lp.getTokenId()), lp.getBytes().toByteArray());
            assertEquals(top, lp.getTopLogprobsCount());
            for (var alt : lp.getTopLogprobsList()) {
                assertEquals(logSoftmax(rows[i], alt.getTokenId()), alt.getLogprob(), 1e-4);
                assertFalse(alt.getBytes().isEmpty());
            }
        }
    }

    @Test
    void logprobsAndPromptLogprobsEqualScoresLogSoftmax() {
        GenerateResponse r = client.generate(request(sampled(3L, 10).setLogprobs(3).setPromptLogprobs(2)).build());
        int[] expected = Generator.generate(model, tok, prompt, engineSampled(3L, 10), null).tokens();
        assertEquals(Arrays.stream(expected).boxed().toList(), r.getTokenIdsList(), "same tokens as in-process");
        assertMatchesScore(r.getTokenIdsList(), r.getLogprobsList(), 3);
        assertEquals(Arrays.stream(prompt).boxed().toList(), r.getPromptTokenIdsList());
        assertEquals(prompt.length - 1, r.getPromptLogprobsCount());
        int[] rows = new int[prompt.length - 1];
        for (int i = 0; i < rows.length; i++) rows[i] = i;
        float[][] logits = model.prefill(model.newState(), prompt, rows); // score --prefill K --positions 0..K-2
        for (int i = 0; i < rows.length; i++) {
            assertEquals(prompt[i + 1], r.getPromptLogprobs(i).getTokenId());
            assertEquals(logSoftmax(logits[i], prompt[i + 1]), r.getPromptLogprobs(i).getLogprob(), 1e-4, "prompt position " + (i + 1));
            assertEquals(2, r.getPromptLogprobs(i).getTopLogprobsCount());
        }
    }

    @Test
    void streamedChunksCarryTheLogprobsOfTheirTokens() {
        GenerateRequest req = request(sampled(4L, 8).setLogprobs(1).setPromptLogprobs(0)).build();
        Iterator<GenerateChunk> it = client.generateStream(req);
        List<Integer> ids = new ArrayList<>();
        List<io.lightmesh.proto.v1.TokenLogprob> lps = new ArrayList<>();
        GenerateChunk first = null, last = null;
        while (it.hasNext()) {
            GenerateChunk c = it.next();
            if (first == null) first = c;
            assertEquals(c.getTokenIdsCount(), c.getLogprobsCount(), "each chunk's logprobs are its tokens'");
            ids.addAll(c.getTokenIdsList());
            lps.addAll(c.getLogprobsList());
            last = c;
        }
        assertEquals(Arrays.stream(prompt).boxed().toList(), first.getPromptTokenIdsList());
        assertEquals(prompt.length - 1, first.getPromptLogprobsCount());
        assertEquals(FinishReason.FINISH_REASON_LENGTH, last.getFinishReason());
        assertEquals(8, ids.size());
        assertMatchesScore(ids, lps, 1);
        assertEquals(client.generate(req).getLogprobsList(), lps, "streamed and whole answers agree");
    }

    @Test
    void seededChoicesAreReproducibleAndEachIsItsSeedsSample() {
        GenerateRequest req = request(sampled(11L, 8).setN(3).setLogprobs(0)).build();
        GenerateResponse a = client.generate(req), b = client.generate(req);
        assertEquals(3, a.getChoicesCount());
        assertEquals(a.getChoicesList(), b.getChoicesList(), "the same seed gives the same choices");
        List<Integer> firstChoice = a.getChoices(0).getTokenIdsList();
        assertEquals(firstChoice, a.getTokenIdsList(), "the top-level fields are choice 0");
        List<List<Integer>> all = new ArrayList<>();
        for (Choice c : a.getChoicesList()) {
            int[] single = Generator.generate(model, tok, prompt, engineSampled(11L, 8).forChoice(c.getIndex()), null).tokens();
            assertEquals(Arrays.stream(single).boxed().toList(), c.getTokenIdsList(), "choice " + c.getIndex());
            assertEquals(FinishReason.FINISH_REASON_LENGTH, c.getFinishReason());
            assertEquals(8, c.getCompletionTokens());
            assertEquals(8, c.getLogprobsCount());
            assertEquals(tok.decode(single), c.getText());
            all.add(c.getTokenIdsList());
        }
        assertTrue(all.stream().distinct().count() > 1, "the choices differ: " + all);
        assertEquals(24, a.getUsage().getCompletionTokens(), "usage counts every choice");
        assertEquals(prompt.length, a.getUsage().getPromptTokens());

        Map<Integer, List<Integer>> streamed = new HashMap<>();
        Map<Integer, FinishReason> reasons = new HashMap<>();
        GenerateChunk last = null;
        for (Iterator<GenerateChunk> it = client.generateStream(req); it.hasNext(); ) {
            GenerateChunk c = it.next();
            streamed.computeIfAbsent(c.getChoiceIndex(), k -> new ArrayList<>()).addAll(c.getTokenIdsList());
            if (c.getFinishReason() != FinishReason.FINISH_REASON_UNSPECIFIED) reasons.put(c.getChoiceIndex(), c.getFinishReason());
            last = c;
        }
        for (Choice c : a.getChoicesList()) assertEquals(c.getTokenIdsList(), streamed.get(c.getIndex()), "streamed choice " + c.getIndex());
        assertEquals(3, reasons.size(), "each choice ends with its own finish reason");
        assertEquals(24, last.getUsage().getCompletionTokens(), "usage on the stream's last chunk");
    }

    @Test
    void penaltiesReachTheSamplerAsInProcess() {
        SamplingParams.Builder s = SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(24).setIgnoreEos(true)
                .setFrequencyPenalty(1.5f).setPresencePenalty(0.5f).setRepetitionPenalty(1.3f);
        GenerateResponse r = client.generate(request(s).build());
        var p = io.lightmesh.engine.generate.SamplingParams.greedy(24).withPenalties(new Penalties(0.5f, 1.5f, 1.3f));
        p = new io.lightmesh.engine.generate.SamplingParams(p.temperature(), 0, 1f, 0L, 24, List.of(), 0, true, p.penalties(), -1);
        int[] expected = Generator.generate(model, tok, prompt, p, null).tokens();
        assertEquals(Arrays.stream(expected).boxed().toList(), r.getTokenIdsList());
        GenerateResponse plain = client.generate(request(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(24).setIgnoreEos(true)).build());
        assertFalse(plain.getTokenIdsList().equals(r.getTokenIdsList()), "the penalties change the greedy answer");
        long distinctPenalised = r.getTokenIdsList().stream().distinct().count(), distinctPlain = plain.getTokenIdsList().stream().distinct().count();
        assertTrue(distinctPenalised >= distinctPlain, "fewer repeats with penalties: " + distinctPenalised + " vs " + distinctPlain);
    }

    @Test
    void outOfRangeParametersAreRefusedNamingTheField() {
        Map<String, SamplingParams.Builder> bad = Map.of(
                "sampling.n", SamplingParams.newBuilder().setN(17),
                "sampling.logprobs", SamplingParams.newBuilder().setLogprobs(21),
                "sampling.prompt_logprobs", SamplingParams.newBuilder().setPromptLogprobs(-1),
                "sampling.presence_penalty", SamplingParams.newBuilder().setPresencePenalty(2.5f),
                "sampling.frequency_penalty", SamplingParams.newBuilder().setFrequencyPenalty(-3f),
                "sampling.repetition_penalty", SamplingParams.newBuilder().setRepetitionPenalty(0f));
        bad.forEach((field, s) -> {
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.generate(request(s.setMaxNewTokens(2)).build()));
            assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
            assertTrue(e.getStatus().getDescription().startsWith(field), e.getStatus().getDescription());
        });
    }
}
