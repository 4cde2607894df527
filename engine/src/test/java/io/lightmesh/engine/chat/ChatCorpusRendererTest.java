package io.lightmesh.engine.chat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The demo model's training chats as {@link ChatCorpusRenderer} renders them. The resource holds 16 lines of
 * {@code python3 tools/reference/chats.py} (seed 2026), one of each kind: a tool-calling turn, a round trip ending
 * in the answer, plain chats with and without tools, a system prompt, an earlier exchange. What the model learns to
 * write (the last turn) must parse back, through the server's own {@link OutputParser}, into the reasoning, tool
 * calls and answer the chat holds; what the server shows the model before that turn must be exactly the training
 * text up to it; and only replayed assistant turns are masked.
 */
class ChatCorpusRendererTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    static List<JsonNode> sample() throws IOException {
        try (InputStream in = ChatCorpusRendererTest.class.getResourceAsStream("/chat/demo_chats_sample.jsonl")) {
            assertNotNull(in, "demo_chats_sample.jsonl");
            List<JsonNode> out = new ArrayList<>();
            for (String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n")) {
                if (!line.isBlank()) out.add(JSON.readTree(line));
            }
            return out;
        }
    }

    @Test
    void theLastTurnParsesBackIntoWhatTheChatHolds() throws IOException {
        int toolTurns = 0, answers = 0;
        for (JsonNode chat : sample()) {
            ChatCorpusRenderer.Rendered r = ChatCorpusRenderer.render(chat);
            String text = r.text();
            String end = ChatTemplate.END_OF_TURN + "\n";
            assertTrue(text.startsWith(ChatTemplate.BEGIN_OF_DOCUMENT) && text.endsWith(end), text);
            int head = text.lastIndexOf(ChatTemplate.GENERATION_PROMPT);
            String output = text.substring(head + ChatTemplate.GENERATION_PROMPT.length(), text.length() - end.length());

            JsonNode last = chat.path("messages").get(chat.path("messages").size() - 1);
            String written = last.path("content").asText();
            assertTrue(written.startsWith("<think>\n"), "every trained turn thinks first: " + written);
            String reasoning = written.substring("<think>\n".length(), written.indexOf("\n</think>\n"));
            String answer = written.substring(written.indexOf("\n</think>\n") + "\n</think>\n".length());

            ParsedOutput parsed = OutputParser.parse(output);
            assertEquals(reasoning, parsed.reasoning(), output);
            assertEquals(answer, parsed.content(), output);
            assertTrue(parsed.malformedToolCalls().isEmpty(), output);
            JsonNode calls = last.path("tool_calls");
            assertEquals(calls.size(), parsed.toolCalls().size(), output);
            for (int i = 0; i < calls.size(); i++) {
                assertEquals(calls.get(i).path("name").asText(), parsed.toolCalls().get(i).name());
                assertEquals(JSON.readTree(calls.get(i).path("arguments").asText()), JSON.readTree(parsed.toolCalls().get(i).arguments()));
            }
            if (calls.isEmpty()) answers++;
            else toolTurns++;
        }
        assertTrue(toolTurns >= 3 && answers >= 3, toolTurns + " tool-calling turns, " + answers + " answers");
    }

    @Test
    void theServersPromptIsTheTrainingTextUpToTheLastTurn() throws IOException {
        for (JsonNode chat : sample()) {
            String text = ChatCorpusRenderer.render(chat).text();
            List<ChatMessage> messages = ChatCorpusRenderer.messages(chat.path("messages"));
            String prompt = ChatTemplate.render(messages.subList(0, messages.size() - 1), ChatCorpusRenderer.tools(chat.path("tools")), true);
            assertEquals(text.substring(0, text.lastIndexOf(ChatTemplate.GENERATION_PROMPT) + ChatTemplate.GENERATION_PROMPT.length()), prompt);
        }
    }

    @Test
    void onlyReplayedAssistantTurnsAreMasked() throws IOException {
        int masked = 0;
        for (JsonNode chat : sample()) {
            ChatCorpusRenderer.Rendered r = ChatCorpusRenderer.render(chat);
            long assistants = 0;
            for (JsonNode m : chat.path("messages")) if (m.path("role").asText().equals("assistant")) assistants++;
            assertEquals(assistants - 1, r.masked().size());
            for (int[] span : r.masked()) {
                String turn = r.text().substring(span[0], span[1]);
                assertTrue(turn.startsWith(ChatTemplate.GENERATION_PROMPT) && turn.endsWith(ChatTemplate.END_OF_TURN + "\n"), turn);
                assertFalse(turn.contains("<think>"), "a replayed turn carries no reasoning: " + turn);
                masked++;
            }
        }
        assertTrue(masked >= 2, masked + " masked turns");
    }
}
