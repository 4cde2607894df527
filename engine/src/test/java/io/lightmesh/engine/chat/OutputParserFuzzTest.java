package io.lightmesh.engine.chat;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Model output, which a prompt can steer into any text, through the output parsers: neither {@link OutputParser} nor
 * {@link StreamingOutputParser} ever throws (bad tool calls are reported as malformed, as documented), and the
 * streaming parser fed the same text in pieces of any sizes gives exactly the batch result. No tag text leaks into a
 * streamed delta that the batch result does not also hold. Seeds (OutputParserFuzzTestInputs): reasoning, answers,
 * tool-call blocks in JSON and Python-literal form, multi-line and truncated calls.
 */
class OutputParserFuzzTest {
    @FuzzTest(maxDuration = "10s")
    void streamedEqualsBatch(FuzzedDataProvider data) {
        boolean startsInReasoning = data.consumeBoolean();
        int pieces = data.consumeInt(1, 16);
        List<Integer> cuts = new ArrayList<>();
        for (int i = 1; i < pieces; i++) cuts.add(data.consumeInt(0, 4096));
        String output = data.consumeRemainingAsString();

        ParsedOutput batch = OutputParser.parse(output, startsInReasoning);
        OutputParser.parse(output); // the form that guesses where reasoning starts

        StreamingOutputParser streaming = new StreamingOutputParser(startsInReasoning);
        List<OutputDelta> deltas = new ArrayList<>();
        int from = 0;
        for (int cut : cuts.stream().map(c -> Math.min(c, output.length())).sorted().toList()) {
            deltas.addAll(streaming.accept(output.substring(from, Math.max(from, cut))));
            from = Math.max(from, cut);
        }
        deltas.addAll(streaming.accept(output.substring(from)));
        deltas.addAll(streaming.finish());
        ParsedOutput streamed = OutputParser.collect(deltas);
        assertEquals(batch, streamed);
        assertEquals(batch, streaming.result());
        for (ToolCall c : batch.toolCalls()) assertTrue(!c.name().isEmpty() && c.arguments().startsWith("{"), c::toString);
    }
}
