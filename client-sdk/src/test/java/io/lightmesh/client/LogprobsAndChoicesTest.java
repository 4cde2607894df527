package io.lightmesh.client;

import io.lightmesh.client.testing.FakeLightMesh;
import io.lightmesh.client.testing.FakeReply;
import io.lightmesh.proto.v1.SamplingParams;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The SDK's side of log-probabilities, several choices, penalties and prompt token ids, against the fake server. */
class LogprobsAndChoicesTest {
    private FakeLightMesh fake;
    private LightMeshClient client;

    @BeforeEach
    void start() {
        fake = FakeLightMesh.start();
        client = fake.client();
    }

    @AfterEach
    void stop() {
        client.close();
        fake.close();
    }

    @Test
    void requestFieldsReachTheWire() {
        fake.enqueue(FakeReply.text("ok"));
        client.generate(GenerationRequest.prompt("Hi").n(3).logprobs(5).promptLogprobs(1).presencePenalty(0.5)
                .frequencyPenalty(-1).repetitionPenalty(1.2).seed(7).build());
        SamplingParams s = fake.lastRequest().getSampling();
        assertEquals(3, s.getN());
        assertEquals(5, s.getLogprobs());
        assertEquals(1, s.getPromptLogprobs());
        assertEquals(0.5f, s.getPresencePenalty());
        assertEquals(-1f, s.getFrequencyPenalty());
        assertEquals(1.2f, s.getRepetitionPenalty());
        fake.enqueue(FakeReply.text("ok"));
        client.generate(GenerationRequest.prompt("Hi").build());
        SamplingParams plain = fake.lastRequest().getSampling();
        assertFalse(plain.hasLogprobs() || plain.hasPromptLogprobs() || plain.hasRepetitionPenalty());
        assertEquals(0, plain.getN());
    }

    @Test
    void builderChecksRanges() {
        assertThrows(IllegalArgumentException.class, () -> GenerationRequest.prompt("x").n(17));
        assertThrows(IllegalArgumentException.class, () -> GenerationRequest.prompt("x").logprobs(21));
        assertThrows(IllegalArgumentException.class, () -> GenerationRequest.prompt("x").presencePenalty(2.5));
        assertThrows(IllegalArgumentException.class, () -> GenerationRequest.prompt("x").repetitionPenalty(0));
    }

    @Test
    void wholeAnswerWithChoicesAndLogprobs() {
        fake.enqueue(FakeReply.deltas("Hello", " world"));
        Completion c = client.generate(GenerationRequest.prompt("Say hi").n(2).logprobs(2).promptLogprobs(0).returnTokenIds(true).build());
        assertEquals(2, c.choices().size());
        assertEquals("Hello world", c.text());
        for (Choice ch : c.choices()) {
            assertEquals("Hello world", ch.text());
            assertEquals(List.of("Hello", " world"), ch.logprobs().stream().map(TokenLogprob::token).toList());
            assertEquals(2, ch.logprobs().getFirst().topLogprobs().size());
            assertEquals(2, ch.tokenIds().size());
        }
        assertEquals(c.choices().get(0).logprobs(), c.logprobs());
        assertEquals(4, c.usage().completionTokens(), "usage counts both choices");
        assertFalse(c.promptTokenIds().isEmpty());
        assertEquals(c.promptTokenIds().size() - 1, c.promptLogprobs().size());
    }

    @Test
    void streamFoldsChoiceByChoice() {
        fake.enqueue(FakeReply.deltas("a", "b", "c"));
        List<Delta> deltas = new ArrayList<>();
        try (GenerationStream s = client.stream(GenerationRequest.prompt("x").n(3).logprobs(0).build())) {
            for (Delta d : s) deltas.add(d);
        }
        assertEquals(3, deltas.stream().filter(Delta::endsChoice).count(), "each choice ends with its finish reason");
        assertEquals(1, deltas.stream().filter(Delta::isLast).count(), "one last delta, with the usage");
        assertTrue(deltas.getLast().isLast());
        Completion c = Completion.of(deltas);
        assertEquals(3, c.choices().size());
        for (Choice ch : c.choices()) {
            assertEquals("abc", ch.text());
            assertEquals(3, ch.logprobs().size());
            assertEquals(-0.1, ch.logprobs().getFirst().logprob(), 1e-6);
        }
        Completion one = client.stream(GenerationRequest.prompt("x").build()).toCompletion();
        assertTrue(one.choices().isEmpty(), "one choice: no choices list");
    }
}
