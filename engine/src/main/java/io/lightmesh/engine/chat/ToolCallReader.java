package io.lightmesh.engine.chat;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.List;

/**
 * Reads the lines of a {@code <tool_calls>} block: one call a line, {@code {"name": ..., "arguments": {...}}}.
 * Tolerated: Python-literal dicts (single quotes, True/False/None) as the system prompt's own example shows them,
 * a call spread over several lines (lines are joined while braces stay open), a JSON array of calls on one line,
 * and arguments given as a JSON string. Anything else is reported as malformed, never thrown.
 */
final class ToolCallReader {
    private static final ObjectMapper JSON = new ObjectMapper().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    private final StringBuilder pending = new StringBuilder(); // lines of a call whose braces are still open

    void line(String line, List<OutputDelta> out) {
        if (pending.isEmpty() && line.isBlank()) return;
        if (!pending.isEmpty()) pending.append('\n');
        pending.append(line);
        String text = pending.toString().strip();
        String error;
        try {
            readCalls(text, out);
            pending.setLength(0);
            return;
        } catch (IllegalArgumentException e) {
            error = e.getMessage();
        }
        if (openDepth(text) > 0) return; // wait for the lines that close it
        out.add(new OutputDelta.Malformed(new MalformedToolCall(text, error)));
        pending.setLength(0);
    }

    /** The block ended: what is still pending is a truncated call. */
    void end(List<OutputDelta> out) {
        String text = pending.toString().strip();
        pending.setLength(0);
        if (!text.isEmpty()) out.add(new OutputDelta.Malformed(new MalformedToolCall(text, "unterminated tool call")));
    }

    private static void readCalls(String text, List<OutputDelta> out) {
        JsonNode node = parse(text);
        if (node.isArray()) {
            List<OutputDelta> calls = new java.util.ArrayList<>();
            for (JsonNode n : node) calls.add(new OutputDelta.Tool(toCall(n)));
            out.addAll(calls);
        } else {
            out.add(new OutputDelta.Tool(toCall(node)));
        }
    }

    private static JsonNode parse(String text) {
        try {
            return JSON.readTree(text);
        } catch (JsonProcessingException strict) {
            try {
                return JSON.readTree(PythonLiteral.toJson(text));
            } catch (JsonProcessingException | IllegalArgumentException lenient) {
                throw new IllegalArgumentException("not JSON: " + strict.getOriginalMessage());
            }
        }
    }

    private static ToolCall toCall(JsonNode n) {
        if (!n.isObject()) throw new IllegalArgumentException("a tool call must be an object");
        JsonNode name = n.get("name");
        if (name == null || !name.isTextual() || name.asText().isEmpty()) throw new IllegalArgumentException("missing \"name\"");
        JsonNode args = n.has("arguments") ? n.get("arguments") : n.get("parameters");
        if (args == null || args.isNull()) return new ToolCall(name.asText(), "{}");
        if (args.isTextual()) {
            try {
                args = JSON.readTree(args.asText());
            } catch (JsonProcessingException e) {
                throw new IllegalArgumentException("\"arguments\" is a string that is not JSON");
            }
        }
        if (!args.isObject()) throw new IllegalArgumentException("\"arguments\" must be an object");
        return new ToolCall(name.asText(), args.toString());
    }

    /** Unclosed { and [ outside strings (either quote), so a call split over lines can be told from a bad one. */
    static int openDepth(String s) {
        int depth = 0;
        char quote = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (quote != 0) {
                if (c == '\\') i++;
                else if (c == quote) quote = 0;
            } else if (c == '"' || c == '\'') {
                quote = c;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                depth--;
            }
        }
        return depth;
    }
}
