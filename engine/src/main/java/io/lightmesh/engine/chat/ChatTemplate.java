package io.lightmesh.engine.chat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.ArrayList;
import java.util.List;

/**
 * Renders a conversation in MiniMax-M1's prompt format, as the chat template of the release's
 * tokenizer_config.json does (see shared/docs/minimax-m1.md):
 * <pre>
 * &lt;begin_of_document&gt;
 * &lt;beginning_of_sentence&gt;system ai_setting=assistant\n{system}&lt;end_of_sentence&gt;\n      (if any system text)
 * &lt;beginning_of_sentence&gt;system tool_setting=tools\n...&lt;tools&gt;\n{tool}\n...&lt;/tools&gt;...  (if any tools)
 * &lt;beginning_of_sentence&gt;user name=user\n{text}&lt;end_of_sentence&gt;\n
 * &lt;beginning_of_sentence&gt;ai name=assistant\n{text}&lt;end_of_sentence&gt;\n
 * &lt;beginning_of_sentence&gt;tool name=tools\ntool name: {name}\ntool result: {text}\n\n&lt;end_of_sentence&gt;\n
 * &lt;beginning_of_sentence&gt;ai name=assistant\n                                          (generation prompt)
 * </pre>
 * Choices where the release's template leaves room, each so the model sees what it was trained on:
 * <ul>
 *   <li>all system messages are gathered into the one system block, joined by "\n", wherever they stand;</li>
 *   <li>tools and tool-call arguments are written as Jinja's {@code tojson} wrote them (Python's
 *       {@code json.dumps}: one line, ", " and ": " separators), a tool as {"name", "description", "parameters"};</li>
 *   <li>consecutive tool results share one tool block, as one tool message with several results does there;</li>
 *   <li>an assistant turn with tool calls is its text, a newline if the text does not end in one, then
 *       {@code <tool_calls>\n{"name": ..., "arguments": ...}\n...</tool_calls>}.</li>
 * </ul>
 * Message text is inserted as is (no trimming); the caller decides whether user text may contain special tokens
 * when it tokenizes the result.
 */
public final class ChatTemplate {
    public static final String BEGIN_OF_DOCUMENT = "<begin_of_document>";
    public static final String BEGIN_OF_TURN = "<beginning_of_sentence>";
    public static final String END_OF_TURN = "<end_of_sentence>";
    public static final String GENERATION_PROMPT = BEGIN_OF_TURN + "ai name=assistant\n";

    private static final String TOOLS_HEADER = BEGIN_OF_TURN + "system tool_setting=tools\nYou are provided with these tools:\n<tools>\n";
    private static final String TOOLS_FOOTER = "</tools>\n\nIf you need to call tools, please respond with <tool_calls></tool_calls> "
            + "XML tags, and provide tool-name and json-object of arguments, following the format below:\n<tool_calls>\n"
            + "{'name': <tool-name-1>, 'arguments': <args-json-object-1>}\n...\n</tool_calls>" + END_OF_TURN + "\n";
    private static final ObjectMapper JSON = new ObjectMapper();

    private ChatTemplate() {}

    public static String render(List<ChatMessage> messages, List<ToolDefinition> tools, boolean addGenerationPrompt) {
        StringBuilder sb = new StringBuilder(BEGIN_OF_DOCUMENT);
        List<String> system = new ArrayList<>();
        for (ChatMessage m : messages) if (m.role() == ChatMessage.Role.SYSTEM) system.add(m.content());
        String systemText = String.join("\n", system);
        if (!systemText.isEmpty()) {
            sb.append(BEGIN_OF_TURN).append("system ai_setting=assistant\n").append(systemText).append(END_OF_TURN).append('\n');
        }
        if (tools != null && !tools.isEmpty()) {
            sb.append(TOOLS_HEADER);
            for (ToolDefinition t : tools) sb.append(toolJson(t)).append('\n');
            sb.append(TOOLS_FOOTER);
        }
        for (int i = 0; i < messages.size(); i++) {
            ChatMessage m = messages.get(i);
            switch (m.role()) {
                case SYSTEM -> { }
                case USER -> turn(sb, "user name=user\n", m.content());
                case ASSISTANT -> turn(sb, "ai name=assistant\n", assistantText(m));
                case TOOL -> {
                    sb.append(BEGIN_OF_TURN).append("tool name=tools\n");
                    for (; i < messages.size() && messages.get(i).role() == ChatMessage.Role.TOOL; i++) {
                        ChatMessage r = messages.get(i);
                        sb.append("tool name: ").append(r.toolName()).append("\ntool result: ").append(r.content()).append("\n\n");
                    }
                    i--;
                    sb.append(END_OF_TURN).append('\n');
                }
            }
        }
        if (addGenerationPrompt) sb.append(GENERATION_PROMPT);
        return sb.toString();
    }

    /** A tool as it appears on its line of the tools block. */
    static String toolJson(ToolDefinition t) {
        StringBuilder sb = new StringBuilder("{\"name\": ");
        PythonJson.string(t.name(), sb);
        if (t.description() != null) {
            sb.append(", \"description\": ");
            PythonJson.string(t.description(), sb);
        }
        if (t.parameters() != null) {
            sb.append(", \"parameters\": ");
            PythonJson.write(t.parameters(), sb);
        }
        return sb.append('}').toString();
    }

    /** A tool call as the model writes it inside {@code <tool_calls>}. */
    static String toolCallJson(ToolCall call) {
        StringBuilder sb = new StringBuilder("{\"name\": ");
        PythonJson.string(call.name(), sb);
        sb.append(", \"arguments\": ");
        if (call.arguments().isBlank()) return sb.append("{}}").toString();
        JsonNode args = null;
        try {
            args = JSON.readTree(call.arguments());
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            // not JSON: kept as the model (or client) wrote it
        }
        if (args == null || args.isMissingNode()) sb.append(call.arguments());
        else PythonJson.write(args, sb);
        return sb.append('}').toString();
    }

    private static String assistantText(ChatMessage m) {
        if (m.toolCalls().isEmpty()) return m.content();
        StringBuilder sb = new StringBuilder(m.content());
        if (!sb.isEmpty() && sb.charAt(sb.length() - 1) != '\n') sb.append('\n');
        sb.append("<tool_calls>\n");
        for (ToolCall c : m.toolCalls()) sb.append(toolCallJson(c)).append('\n');
        return sb.append("</tool_calls>").toString();
    }

    private static void turn(StringBuilder sb, String header, String text) {
        sb.append(BEGIN_OF_TURN).append(header).append(text).append(END_OF_TURN).append('\n');
    }
}
