package io.lightmesh.engine.chat;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.lightmesh.engine.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;

import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class ChatTemplateTest {
    static final ToolDefinition WEATHER = ToolDefinition.of("get_weather", "Current weather in a city.",
            "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}");

    @Test
    void userOnlyWithGenerationPrompt() {
        assertEquals("<begin_of_document><beginning_of_sentence>user name=user\nHi there<end_of_sentence>\n"
                        + "<beginning_of_sentence>ai name=assistant\n",
                ChatTemplate.render(List.of(ChatMessage.user("Hi there")), List.of(), true));
        assertEquals("<begin_of_document><beginning_of_sentence>user name=user\nHi<end_of_sentence>\n",
                ChatTemplate.render(List.of(ChatMessage.user("Hi")), null, false));
    }

    @Test
    void fullConversationWithToolsMatchesTheM1Format() {
        List<ChatMessage> messages = List.of(
                ChatMessage.system("You are helpful."),
                ChatMessage.user("Weather in Paris and Köln?"),
                ChatMessage.assistant("Let me check.", List.of(
                        new ToolCall("get_weather", "{\"city\":\"Paris\"}"),
                        new ToolCall("get_weather", "{\"city\":\"Köln\",\"days\":1.5}"))),
                ChatMessage.tool("get_weather", "18 C, sunny"),
                ChatMessage.tool("get_weather", "12 C, rain"),
                ChatMessage.assistant("Paris: 18 C. Köln: 12 C."),
                ChatMessage.user("Thanks"));
        String expected = "<begin_of_document>"
                + "<beginning_of_sentence>system ai_setting=assistant\nYou are helpful.<end_of_sentence>\n"
                + "<beginning_of_sentence>system tool_setting=tools\nYou are provided with these tools:\n<tools>\n"
                + "{\"name\": \"get_weather\", \"description\": \"Current weather in a city.\", \"parameters\": "
                + "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}\n"
                + "</tools>\n\nIf you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and provide "
                + "tool-name and json-object of arguments, following the format below:\n<tool_calls>\n"
                + "{'name': <tool-name-1>, 'arguments': <args-json-object-1>}\n...\n</tool_calls><end_of_sentence>\n"
                + "<beginning_of_sentence>user name=user\nWeather in Paris and Köln?<end_of_sentence>\n"
                + "<beginning_of_sentence>ai name=assistant\nLet me check.\n<tool_calls>\n"
                + "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                + "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Köln\", \"days\": 1.5}}\n"
                + "</tool_calls><end_of_sentence>\n"
                + "<beginning_of_sentence>tool name=tools\ntool name: get_weather\ntool result: 18 C, sunny\n\n"
                + "tool name: get_weather\ntool result: 12 C, rain\n\n<end_of_sentence>\n"
                + "<beginning_of_sentence>ai name=assistant\nParis: 18 C. Köln: 12 C.<end_of_sentence>\n"
                + "<beginning_of_sentence>user name=user\nThanks<end_of_sentence>\n"
                + "<beginning_of_sentence>ai name=assistant\n";
        assertEquals(expected, ChatTemplate.render(messages, List.of(WEATHER), true));
    }

    @Test
    void systemMessagesAreGatheredAndEmptyOnesLeaveNoBlock() {
        assertEquals("<begin_of_document><beginning_of_sentence>system ai_setting=assistant\nA\nB<end_of_sentence>\n"
                        + "<beginning_of_sentence>user name=user\nq<end_of_sentence>\n",
                ChatTemplate.render(List.of(ChatMessage.system("A"), ChatMessage.user("q"), ChatMessage.system("B")), List.of(), false));
        assertEquals("<begin_of_document><beginning_of_sentence>user name=user\nq<end_of_sentence>\n",
                ChatTemplate.render(List.of(ChatMessage.system(""), ChatMessage.user("q")), List.of(), false));
    }

    @Test
    void toolCallsWithoutTextAndToolsWithoutDescription() {
        String s = ChatTemplate.render(List.of(ChatMessage.assistant("", List.of(new ToolCall("now", "{}"))),
                ChatMessage.assistant("line\n", List.of(new ToolCall("f", "not json")))), List.of(), false);
        assertEquals("<begin_of_document><beginning_of_sentence>ai name=assistant\n<tool_calls>\n"
                + "{\"name\": \"now\", \"arguments\": {}}\n</tool_calls><end_of_sentence>\n"
                + "<beginning_of_sentence>ai name=assistant\nline\n<tool_calls>\n"
                + "{\"name\": \"f\", \"arguments\": not json}\n</tool_calls><end_of_sentence>\n", s);
        assertEquals("{\"name\": \"now\"}", ChatTemplate.toolJson(new ToolDefinition("now", null, null)));
        assertEquals("{\"name\": \"now\", \"arguments\": {}}", ChatTemplate.toolCallJson(new ToolCall("now", " ")));
    }

    @Test
    void jsonIsWrittenAsPythonJsonDumps() throws Exception {
        ObjectMapper m = new ObjectMapper();
        // expected strings are what python3 -c 'import json; print(json.dumps(x, ensure_ascii=False))' prints
        assertEquals("{\"a\": [1, 2.5, true, null, \"x\"], \"b\": {}, \"c\": []}",
                PythonJson.write(m.readTree("{\"a\":[1,2.5,true,null,\"x\"],\"b\":{},\"c\":[]}")));
        assertEquals("\"q\\\"\\\\\\n\\t\\u0001é😀\u2028\"", PythonJson.write(m.readTree("\"q\\\"\\\\\\n\\t\\u0001é😀\\u2028\"")));
        assertEquals("1e-05", PythonJson.pythonFloat(0.00001));
        assertEquals("0.0001", PythonJson.pythonFloat(0.0001));
        assertEquals("1e+16", PythonJson.pythonFloat(1e16));
        assertEquals("1000000000000000.0", PythonJson.pythonFloat(1e15));
        assertEquals("-1.5e+300", PythonJson.pythonFloat(-1.5e300));
        assertEquals("0.1", PythonJson.pythonFloat(0.1));
        assertEquals("123.456", PythonJson.pythonFloat(123.456));
        assertEquals("100.0", PythonJson.pythonFloat(100.0));
        assertEquals("12345678901234567890", PythonJson.write(m.readTree("12345678901234567890")));
    }

    @Test
    void invalidMessagesAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> new ChatMessage(ChatMessage.Role.USER, "x", List.of(new ToolCall("f", "{}")), null));
        assertThrows(IllegalArgumentException.class, () -> ChatMessage.tool("", "r"));
        assertThrows(IllegalArgumentException.class, () -> new ChatMessage(ChatMessage.Role.USER, "x", null, "f"));
        assertThrows(IllegalArgumentException.class, () -> ToolDefinition.of("f", null, "{not json"));
    }

    @Test
    void renderedPromptTokenizesWithSpecialTokens() throws Exception {
        Tokenizer tok = Tokenizer.load(Path.of(resource("/tokenizer/m1like.tokenizer.json")));
        String prompt = ChatTemplate.render(List.of(ChatMessage.system("S"), ChatMessage.user("Hi"), ChatMessage.assistant("Yo"),
                ChatMessage.user("Bye")), List.of(), true);
        int[] ids = tok.encode(prompt);
        int bos = tok.tokenId("<beginning_of_sentence>"), eos = tok.tokenId("<end_of_sentence>");
        assertEquals(tok.tokenId("<begin_of_document>"), ids[0]);
        assertEquals(5, Arrays.stream(ids).filter(i -> i == bos).count());
        assertEquals(4, Arrays.stream(ids).filter(i -> i == eos).count());
        assertEquals(prompt, tok.decode(ids));
    }

    private static java.net.URI resource(String name) throws URISyntaxException {
        return ChatTemplateTest.class.getResource(name).toURI();
    }
}
