package io.lightmesh.engine.chat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Renders the demo model's training chats (tools/reference/chats.py's JSON lines) with {@link ChatTemplate}, so
 * the model is trained on exactly the text the server will show it. Output, one JSON line per chat:
 * {@code {"chat": i, "text": rendered, "mask": [[start, end], ...]}} where the spans (char offsets, the text is
 * ASCII) cover every assistant turn but the last: those are written as a client sends them back (no reasoning),
 * and the model should not learn to answer that way, so the trainer leaves them out of the loss.
 *
 * <p>Run from the repository root after {@code mvn -pl engine test-compile}:
 * {@code java -cp engine/target/classes:engine/target/test-classes:<jackson jars>
 * io.lightmesh.engine.chat.ChatCorpusRenderer chats.jsonl rendered.jsonl}
 */
public final class ChatCorpusRenderer {
    private static final ObjectMapper JSON = new ObjectMapper();

    private ChatCorpusRenderer() {}

    /** One rendered chat: its text and the char spans left out of the loss. */
    public record Rendered(String text, List<int[]> masked) {}

    public static void main(String[] args) throws IOException {
        if (args.length != 2) {
            System.err.println("usage: ChatCorpusRenderer CHATS.jsonl OUT.jsonl");
            System.exit(2);
        }
        int n = 0;
        long chars = 0;
        try (BufferedReader in = Files.newBufferedReader(Path.of(args[0]), StandardCharsets.UTF_8);
             BufferedWriter out = Files.newBufferedWriter(Path.of(args[1]), StandardCharsets.UTF_8)) {
            for (String line = in.readLine(); line != null; line = in.readLine()) {
                if (line.isBlank()) continue;
                JsonNode chat = JSON.readTree(line);
                Rendered r = render(chat);
                ObjectNode o = JSON.createObjectNode();
                o.put("chat", chat.path("chat").asInt());
                o.put("text", r.text());
                ArrayNode spans = o.putArray("mask");
                for (int[] s : r.masked()) spans.addArray().add(s[0]).add(s[1]);
                out.write(JSON.writeValueAsString(o));
                out.write('\n');
                n++;
                chars += r.text().length();
            }
        }
        System.out.println("rendered " + n + " chats, " + chars + " chars -> " + args[1]);
    }

    /** Renders one chat line of chats.py. */
    public static Rendered render(JsonNode chat) {
        List<ToolDefinition> tools = tools(chat.path("tools"));
        List<ChatMessage> messages = messages(chat.path("messages"));
        String text = ChatTemplate.render(messages, tools, false);
        int last = messages.size() - 1;
        if (messages.get(last).role() != ChatMessage.Role.ASSISTANT) {
            throw new IllegalArgumentException("chat " + chat.path("chat") + " does not end with an assistant turn");
        }
        List<int[]> masked = new ArrayList<>();
        for (int k = 0; k < last; k++) {
            if (messages.get(k).role() != ChatMessage.Role.ASSISTANT) continue;
            String before = ChatTemplate.render(messages.subList(0, k), tools, false);
            String through = ChatTemplate.render(messages.subList(0, k + 1), tools, false);
            if (!text.startsWith(through)) throw new IllegalStateException("rendering is not prefix-stable at turn " + k);
            masked.add(new int[] {before.length(), through.length()});
        }
        return new Rendered(text, masked);
    }

    static List<ToolDefinition> tools(JsonNode array) {
        List<ToolDefinition> tools = new ArrayList<>();
        for (JsonNode t : array) {
            tools.add(new ToolDefinition(t.path("name").asText(), t.hasNonNull("description") ? t.get("description").asText() : null,
                    t.get("parameters")));
        }
        return tools;
    }

    static List<ChatMessage> messages(JsonNode array) {
        List<ChatMessage> messages = new ArrayList<>();
        for (JsonNode m : array) {
            String content = m.path("content").asText("");
            messages.add(switch (m.path("role").asText()) {
                case "system" -> ChatMessage.system(content);
                case "user" -> ChatMessage.user(content);
                case "tool" -> ChatMessage.tool(m.path("name").asText(), content);
                case "assistant" -> {
                    List<ToolCall> calls = new ArrayList<>();
                    for (JsonNode c : m.path("tool_calls")) calls.add(new ToolCall(c.path("name").asText(), c.path("arguments").asText()));
                    yield ChatMessage.assistant(content, calls);
                }
                default -> throw new IllegalArgumentException("unknown role " + m.path("role"));
            });
        }
        return messages;
    }
}
