package io.lightmesh.engine.chat;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class OutputParserTest {
    static final String WITH_TOOLS = "<think>\nThe user wants weather.\n</think>\nLet me check.\n<tool_calls>\n"
            + "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
            + "{'name': 'get_time', 'arguments': {'tz': 'CET', 'dst': True, 'note': \"it's\"}}\n"
            + "this is not json\n"
            + "{\"name\": \"multi\",\n \"arguments\": {\"a\": [1,\n 2]}}\n"
            + "{\"name\": \"stringly\", \"arguments\": \"{\\\"x\\\": 1}\"}\n"
            + "[{\"name\": \"a1\", \"arguments\": {}}, {\"name\": \"a2\"}]\n"
            + "{\"arguments\": {}}\n"
            + "</tool_calls>";

    @Test
    void reasoningThenAnswer() {
        ParsedOutput p = OutputParser.parse("<think>\nLet me think.\n2+2 is 4.\n</think>\n\nThe answer is **4**.\n");
        assertEquals("Let me think.\n2+2 is 4.", p.reasoning());
        assertEquals("The answer is **4**.", p.content());
        assertTrue(p.toolCalls().isEmpty());
        assertTrue(p.malformedToolCalls().isEmpty());
    }

    @Test
    void outputThatStartsInsideThinking() {
        ParsedOutput p = OutputParser.parse("still thinking\n</think>\nAnswer");
        assertEquals("still thinking", p.reasoning());
        assertEquals("Answer", p.content());
        // told explicitly, and truncated before </think>: all of it is reasoning
        p = OutputParser.parse("thinking and thinking", true);
        assertEquals("thinking and thinking", p.reasoning());
        assertEquals("", p.content());
        // not told, no tags: all of it is the answer
        p = OutputParser.parse("  Just an answer. ");
        assertEquals("", p.reasoning());
        assertEquals("Just an answer.", p.content());
        // thinking cut off by the budget
        p = OutputParser.parse("<think>\nthinking forever");
        assertEquals("thinking forever", p.reasoning());
        assertEquals("", p.content());
    }

    @Test
    void toolCallsAreParsedAndBadLinesReported() {
        ParsedOutput p = OutputParser.parse(WITH_TOOLS);
        assertEquals("The user wants weather.", p.reasoning());
        assertEquals("Let me check.", p.content());
        assertEquals(List.of(
                new ToolCall("get_weather", "{\"city\":\"Paris\"}"),
                new ToolCall("get_time", "{\"tz\":\"CET\",\"dst\":true,\"note\":\"it's\"}"),
                new ToolCall("multi", "{\"a\":[1,2]}"),
                new ToolCall("stringly", "{\"x\":1}"),
                new ToolCall("a1", "{}"),
                new ToolCall("a2", "{}")), p.toolCalls());
        assertEquals(2, p.malformedToolCalls().size());
        assertEquals("this is not json", p.malformedToolCalls().get(0).text());
        assertTrue(p.malformedToolCalls().get(0).error().startsWith("not JSON"), p.malformedToolCalls().get(0).error());
        assertEquals("{\"arguments\": {}}", p.malformedToolCalls().get(1).text());
        assertEquals("missing \"name\"", p.malformedToolCalls().get(1).error());
    }

    @Test
    void textAroundToolBlocksAndUnterminatedBlocks() {
        ParsedOutput p = OutputParser.parse("Before <tool_calls>{\"name\": \"f\", \"arguments\": {}}</tool_calls> after");
        assertEquals("Before  after", p.content());
        assertEquals(List.of(new ToolCall("f", "{}")), p.toolCalls());
        p = OutputParser.parse("x\n<tool_calls>\n{\"name\": \"f\", \"arguments\": {}}\n{\"name\": \"g\", \"argu");
        assertEquals("x", p.content());
        assertEquals(List.of(new ToolCall("f", "{}")), p.toolCalls());
        assertEquals(new MalformedToolCall("{\"name\": \"g\", \"argu", "unterminated tool call"), p.malformedToolCalls().getFirst());
        // tags that are not tags: kept as text
        p = OutputParser.parse("a <b> and <tool and </think> and 1 < 2 <", false);
        assertEquals("a <b> and <tool and </think> and 1 < 2 <", p.content());
        // without the flag, a </think> before any <think> means the output started inside thinking
        p = OutputParser.parse("a <b> and <tool and </think> and 1 < 2 <");
        assertEquals("a <b> and <tool and", p.reasoning());
        assertEquals("and 1 < 2 <", p.content());
    }

    static final List<String> OUTPUTS = List.of(
            WITH_TOOLS,
            "<think>\nLet me think.\n</think>\n\nThe answer is 4.\n",
            "   <think>x</think>   y   ",
            "<thinking is not a tag",
            "<think></think>",
            "a <b> and <tool and </think> and 1 < 2 <",
            "Before <tool_calls>{\"name\": \"f\", \"arguments\": {}}</tool_calls> after\n\n<tool_calls>\n{\"name\": \"g\"}\n</tool_calls>",
            "x\n<tool_calls>\n{\"name\": \"f\", \"arguments\": {}}\n{\"name\": \"g\", \"argu",
            "<think>\n<think> nested? </thin </think> < </think>\n\n  answer\n\n with \n\n gaps  \n",
            "");

    @Test
    void streamingEqualsBatchForAnySplit() {
        Random rnd = new Random(3);
        for (String out : OUTPUTS) {
            for (boolean startsInReasoning : new boolean[]{false, true}) {
                ParsedOutput batch = OutputParser.parse(out, startsInReasoning);
                for (int trial = 0; trial < 50; trial++) {
                    StreamingOutputParser s = new StreamingOutputParser(startsInReasoning);
                    List<OutputDelta> deltas = new ArrayList<>();
                    int i = 0;
                    while (i < out.length()) {
                        int n = trial == 0 ? 1 : 1 + rnd.nextInt(12);
                        int end = Math.min(out.length(), i + n);
                        deltas.addAll(s.accept(out.substring(i, end)));
                        i = end;
                    }
                    deltas.addAll(s.finish());
                    assertEquals(batch, OutputParser.collect(deltas), "split of " + out);
                    assertEquals(batch, s.result());
                }
            }
        }
    }

    @Test
    void partialTagsNeverReachTheText() {
        String out = "<think>\nhmm</think>\nCalling now <tool_calls>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_calls>";
        StreamingOutputParser s = new StreamingOutputParser(false);
        List<OutputDelta> deltas = new ArrayList<>();
        for (int i = 0; i < out.length(); i++) {
            List<OutputDelta> d = s.accept(out.substring(i, i + 1));
            for (OutputDelta x : d) {
                if (x instanceof OutputDelta.Content c) assertFalse(c.text().contains("<"), c.text());
                if (x instanceof OutputDelta.Reasoning r) assertFalse(r.text().contains("<"), r.text());
            }
            deltas.addAll(d);
            // the call is out as soon as its line is complete, before the block closes
            if (out.startsWith("{}}\n", i - 3) && i > 3) {
                assertTrue(deltas.stream().anyMatch(x -> x instanceof OutputDelta.Tool));
            }
        }
        deltas.addAll(s.finish());
        assertEquals(List.of(new OutputDelta.Reasoning("h"), new OutputDelta.Reasoning("m"), new OutputDelta.Reasoning("m"),
                new OutputDelta.Content("C")), deltas.subList(0, 4));
        ParsedOutput p = OutputParser.collect(deltas);
        assertEquals("Calling now", p.content());
        assertEquals(List.of(new ToolCall("f", "{}")), p.toolCalls());
    }

    @Test
    void heldTagPrefixIsReleasedWhenItTurnsOutToBeText() {
        StreamingOutputParser s = new StreamingOutputParser(false);
        assertEquals(List.of(new OutputDelta.Content("a")), s.accept("a <tool"));
        assertEquals(List.of(new OutputDelta.Content(" <toolbox")), s.accept("box"));
        assertEquals(List.of(), s.accept("<"));
        assertEquals(List.of(new OutputDelta.Content("<")), s.finish());
        s = new StreamingOutputParser(false);
        assertEquals(List.of(), s.accept("  <thi"));
        assertEquals(List.of(), s.accept("n"));  // "<thin" may still become <think>
        assertEquals(List.of(new OutputDelta.Content("<thinx")), s.accept("x"));
    }
}
