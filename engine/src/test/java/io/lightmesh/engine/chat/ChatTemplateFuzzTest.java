package io.lightmesh.engine.chat;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Conversations from outside (message text, tool names, tool-call arguments and parameter schemas as the OpenAI and
 * gRPC APIs pass them) through {@link ChatTemplate#render}: it never throws, and the prompt always has the template's
 * frame (document start, one turn per non-system message, the generation prompt last). {@link ToolDefinition#of} may
 * reject a parameter schema that is not JSON with the {@link IllegalArgumentException} it documents; tool-call
 * arguments that are not JSON are kept as written. Every tool call rendered into an assistant turn reads back through
 * {@link OutputParser} as a call of that tool.
 */
class ChatTemplateFuzzTest {
    @FuzzTest(maxDuration = "10s")
    void render(FuzzedDataProvider data) {
        List<ToolDefinition> tools = new ArrayList<>();
        int nTools = data.consumeInt(0, 3);
        for (int i = 0; i < nTools; i++) {
            String name = data.consumeString(40);
            String description = data.consumeBoolean() ? data.consumeString(80) : null;
            String params = data.consumeBoolean() ? data.consumeString(200) : null;
            try {
                tools.add(ToolDefinition.of(name, description, params));
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage().contains("not JSON"), e::getMessage);
            }
        }
        List<ChatMessage> messages = new ArrayList<>();
        List<ToolCall> renderedCalls = new ArrayList<>();
        int nMessages = data.consumeInt(1, 8);
        for (int i = 0; i < nMessages; i++) {
            switch (data.consumeInt(0, 3)) {
                case 0 -> messages.add(ChatMessage.system(data.consumeString(100)));
                case 1 -> messages.add(ChatMessage.user(data.consumeString(200)));
                case 2 -> {
                    List<ToolCall> calls = new ArrayList<>();
                    int n = data.consumeInt(0, 2);
                    for (int j = 0; j < n; j++) calls.add(new ToolCall(data.consumeString(30), data.consumeString(120)));
                    messages.add(ChatMessage.assistant(data.consumeString(200), calls));
                    renderedCalls.addAll(calls);
                }
                default -> {
                    String tool = data.consumeString(30);
                    messages.add(ChatMessage.tool(tool.isEmpty() ? "t" : tool, data.consumeString(200)));
                }
            }
        }
        boolean generationPrompt = data.consumeBoolean();
        String prompt = ChatTemplate.render(messages, tools, generationPrompt);
        assertTrue(prompt.startsWith(ChatTemplate.BEGIN_OF_DOCUMENT));
        if (generationPrompt) assertTrue(prompt.endsWith(ChatTemplate.GENERATION_PROMPT));
        for (ToolCall c : renderedCalls) {
            // a call of a plain name with JSON object arguments is read back as written by the model's parser
            if (!c.name().matches("[A-Za-z0-9_.-]{1,30}") || !isJsonObject(c.arguments())) continue;
            ParsedOutput back = OutputParser.parse("<tool_calls>\n" + ChatTemplate.toolCallJson(c) + "\n</tool_calls>", false);
            assertTrue(back.toolCalls().size() == 1 && back.toolCalls().getFirst().name().equals(c.name()), () -> c + " read back as " + back);
        }
    }

    private static boolean isJsonObject(String s) {
        try {
            return new com.fasterxml.jackson.databind.ObjectMapper().readTree(s) instanceof com.fasterxml.jackson.databind.node.ObjectNode;
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            return false;
        }
    }
}
