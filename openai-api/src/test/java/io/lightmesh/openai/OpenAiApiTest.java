package io.lightmesh.openai;

import io.grpc.Status;
import io.lightmesh.client.testing.FakeLightMesh;
import io.lightmesh.client.testing.FakeReply;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.Role;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The OpenAI HTTP API on a real Vert.x server, in front of the SDK's fake LightMesh server. */
class OpenAiApiTest {
    private static final String MODEL = "minimax-m1-fake";
    private static final JsonObject WEATHER_TOOL = new JsonObject().put("type", "function").put("function", new JsonObject()
            .put("name", "get_weather").put("description", "Current weather in a city")
            .put("parameters", new JsonObject().put("type", "object")
                    .put("properties", new JsonObject().put("city", new JsonObject().put("type", "string")))
                    .put("required", new JsonArray().add("city"))));

    private FakeLightMesh fake;
    private TestServer server;

    @BeforeEach
    void start() throws Exception {
        fake = FakeLightMesh.start();
        server = new TestServer(fake.client(), OpenAiOptions.defaults().withModelAliases(List.of("minimax-m1")));
    }

    @AfterEach
    void stop() throws Exception {
        server.close();
        fake.close();
    }

    private static JsonObject chat(String userText) {
        return new JsonObject().put("model", MODEL).put("messages", new JsonArray().add(msg("user", userText)));
    }

    private static JsonObject msg(String role, String content) { return new JsonObject().put("role", role).put("content", content); }

    private static JsonObject error(HttpResponse<String> r) { return new JsonObject(r.body()).getJsonObject("error"); }

    /** The JSON payloads of an SSE body, [DONE] excluded (checked to be last). */
    private static List<JsonObject> events(String body) {
        List<JsonObject> out = new ArrayList<>();
        String[] blocks = body.split("\n\n");
        assertEquals("data: [DONE]", blocks[blocks.length - 1], "the stream ends with [DONE]");
        for (int i = 0; i < blocks.length - 1; i++) {
            assertTrue(blocks[i].startsWith("data: "), blocks[i]);
            out.add(new JsonObject(blocks[i].substring(6)));
        }
        return out;
    }

    @Test
    void chatKeepsReasoningOutOfContent() throws Exception {
        fake.enqueue(FakeReply.text("Hello there!").reasoning("A greeting; answer politely."));
        HttpResponse<String> r = server.post("/v1/chat/completions", chat("Hi").put("temperature", 0.2).put("top_p", 0.5)
                .put("seed", 7).put("max_tokens", 300).put("stop", new JsonArray().add("END")));
        assertEquals(200, r.statusCode(), r.body());
        JsonObject body = new JsonObject(r.body());
        assertEquals("chat.completion", body.getString("object"));
        assertEquals(MODEL, body.getString("model"));
        assertTrue(body.getString("id").startsWith("chatcmpl-"));
        JsonObject choice = body.getJsonArray("choices").getJsonObject(0);
        assertEquals("stop", choice.getString("finish_reason"));
        JsonObject message = choice.getJsonObject("message");
        assertEquals("assistant", message.getString("role"));
        assertEquals("Hello there!", message.getString("content"));
        assertEquals("A greeting; answer politely.", message.getString("reasoning_content"));
        assertFalse(message.containsKey("tool_calls"));
        JsonObject usage = body.getJsonObject("usage");
        assertEquals(usage.getInteger("prompt_tokens") + usage.getInteger("completion_tokens"), usage.getInteger("total_tokens"));
        assertEquals(4, usage.getJsonObject("completion_tokens_details").getInteger("reasoning_tokens"));

        GenerateRequest sent = fake.lastRequest();
        assertTrue(sent.getParseOutput());
        assertEquals(0.2f, sent.getSampling().getTemperature());
        assertEquals(0.5f, sent.getSampling().getTopP());
        assertEquals(7, sent.getSampling().getSeed());
        assertEquals(300, sent.getSampling().getMaxNewTokens());
        assertEquals(List.of("END"), sent.getSampling().getStopList());
        assertEquals(body.getString("id"), "chatcmpl-" + sent.getRequestId());
    }

    @Test
    void toolCallRoundTrip() throws Exception {
        fake.enqueue(FakeReply.text("").reasoning("Need the weather tool.").toolCall("get_weather", "{\"city\":\"Paris\"}"),
                FakeReply.text("It is sunny in Paris."));
        JsonObject req = chat("Weather in Paris?").put("tools", new JsonArray().add(WEATHER_TOOL));
        HttpResponse<String> r1 = server.post("/v1/chat/completions", req);
        assertEquals(200, r1.statusCode(), r1.body());
        JsonObject choice = new JsonObject(r1.body()).getJsonArray("choices").getJsonObject(0);
        assertEquals("tool_calls", choice.getString("finish_reason"));
        JsonObject message = choice.getJsonObject("message");
        assertNull(message.getValue("content"));
        JsonObject call = message.getJsonArray("tool_calls").getJsonObject(0);
        assertEquals("function", call.getString("type"));
        assertEquals("get_weather", call.getJsonObject("function").getString("name"));
        assertEquals(new JsonObject().put("city", "Paris"), new JsonObject(call.getJsonObject("function").getString("arguments")));
        var sentTools = fake.lastRequest().getChat().getTools(0);
        assertEquals("get_weather", sentTools.getName());
        assertEquals("object", new JsonObject(sentTools.getParametersJson()).getString("type"));

        JsonArray messages = req.getJsonArray("messages").copy();
        messages.add(message);
        messages.add(new JsonObject().put("role", "tool").put("tool_call_id", call.getString("id")).put("content", "{\"sky\":\"sunny\"}"));
        HttpResponse<String> r2 = server.post("/v1/chat/completions", req.copy().put("messages", messages));
        assertEquals(200, r2.statusCode(), r2.body());
        assertEquals("It is sunny in Paris.", new JsonObject(r2.body()).getJsonArray("choices").getJsonObject(0)
                .getJsonObject("message").getString("content"));

        var sent = fake.lastRequest().getChat();
        assertEquals(3, sent.getMessagesCount());
        assertEquals(Role.ROLE_ASSISTANT, sent.getMessages(1).getRole());
        assertEquals(call.getString("id"), sent.getMessages(1).getToolCalls(0).getId());
        assertEquals("Need the weather tool.", sent.getMessages(1).getReasoningContent());
        assertEquals(Role.ROLE_TOOL, sent.getMessages(2).getRole());
        assertEquals("get_weather", sent.getMessages(2).getName(), "the tool's name is found from the call id");
        assertEquals(call.getString("id"), sent.getMessages(2).getToolCallId());
    }

    @Test
    void toolChoiceShapesWhatTheModelSees() throws Exception {
        JsonObject other = WEATHER_TOOL.copy();
        other.getJsonObject("function").put("name", "get_time");
        JsonArray tools = new JsonArray().add(WEATHER_TOOL).add(other);

        assertEquals(200, server.post("/v1/chat/completions", chat("x").put("tools", tools).put("tool_choice", "none")).statusCode());
        assertEquals(0, fake.lastRequest().getChat().getToolsCount());

        assertEquals(200, server.post("/v1/chat/completions", chat("x").put("tools", tools).put("tool_choice", "auto")).statusCode());
        assertEquals(2, fake.lastRequest().getChat().getToolsCount());
        assertEquals(1, fake.lastRequest().getChat().getMessagesCount());

        assertEquals(200, server.post("/v1/chat/completions", chat("x").put("tools", tools).put("tool_choice", "required")).statusCode());
        var sent = fake.lastRequest().getChat();
        assertEquals(2, sent.getToolsCount());
        assertEquals(Role.ROLE_SYSTEM, sent.getMessages(0).getRole());
        assertTrue(sent.getMessages(0).getContent().contains("must call"));

        JsonObject named = new JsonObject().put("type", "function").put("function", new JsonObject().put("name", "get_time"));
        JsonObject withSystem = chat("x").put("tools", tools).put("tool_choice", named);
        withSystem.getJsonArray("messages").getList().addFirst(Map.of("role", "system", "content", "Be brief."));
        assertEquals(200, server.post("/v1/chat/completions", withSystem).statusCode());
        sent = fake.lastRequest().getChat();
        assertEquals(List.of("get_time"), sent.getToolsList().stream().map(t -> t.getName()).toList());
        assertEquals(2, sent.getMessagesCount(), "the instruction joins the existing system turn");
        assertTrue(sent.getMessages(0).getContent().startsWith("Be brief.\n\n"));
        assertTrue(sent.getMessages(0).getContent().contains("get_time"));
    }

    @Test
    void thinkingBudgetReachesTheServer() throws Exception {
        assertEquals(200, server.post("/v1/chat/completions", chat("x").put("max_thinking_tokens", 1234)).statusCode());
        assertEquals(1234, fake.lastRequest().getSampling().getMaxThinkingTokens());
        assertEquals(200, server.post("/v1/chat/completions", chat("x").put("thinking_budget", "80k")).statusCode());
        assertEquals(80_000, fake.lastRequest().getSampling().getMaxThinkingTokens());
        assertEquals(200, server.post("/v1/chat/completions", chat("x").put("thinking_budget", "40K")).statusCode());
        assertEquals(40_000, fake.lastRequest().getSampling().getMaxThinkingTokens());
        assertEquals(200, server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", "x")
                .put("thinking_budget", 500)).statusCode());
        assertEquals(500, fake.lastRequest().getSampling().getMaxThinkingTokens());
        HttpResponse<String> both = server.post("/v1/chat/completions", chat("x").put("thinking_budget", "40k").put("max_thinking_tokens", 5));
        assertEquals(400, both.statusCode());
        assertEquals("thinking_budget", error(both).getString("param"));
    }

    @Test
    void streamSendsReasoningContentToolCallsFinishAndUsage() throws Exception {
        fake.enqueue(FakeReply.text("Let me look.").reasoning("Think first.").toolCall("get_weather", "{\"city\":\"Oslo\"}"));
        HttpResponse<String> r = server.post("/v1/chat/completions", chat("Oslo?").put("tools", new JsonArray().add(WEATHER_TOOL))
                .put("stream", true).put("stream_options", new JsonObject().put("include_usage", true)));
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(r.headers().firstValue("content-type").orElse("").startsWith("text/event-stream"));
        List<JsonObject> ev = events(r.body());
        for (JsonObject e : ev) assertEquals("chat.completion.chunk", e.getString("object"));
        assertEquals("assistant", ev.getFirst().getJsonArray("choices").getJsonObject(0).getJsonObject("delta").getString("role"));

        StringBuilder content = new StringBuilder();
        StringBuilder reasoning = new StringBuilder();
        List<JsonObject> calls = new ArrayList<>();
        String finish = null;
        for (JsonObject e : ev.subList(0, ev.size() - 1)) {
            assertTrue(e.containsKey("usage") && e.getValue("usage") == null, "usage: null on every chunk but the last");
            JsonObject c = e.getJsonArray("choices").getJsonObject(0);
            JsonObject d = c.getJsonObject("delta");
            if (d.getString("content") != null) content.append(d.getString("content"));
            if (d.getString("reasoning_content") != null) reasoning.append(d.getString("reasoning_content"));
            if (d.getJsonArray("tool_calls") != null) for (Object o : d.getJsonArray("tool_calls")) calls.add((JsonObject) o);
            if (c.getString("finish_reason") != null) finish = c.getString("finish_reason");
        }
        assertEquals("Let me look.", content.toString());
        assertEquals("Think first.", reasoning.toString());
        assertEquals(1, calls.size());
        assertEquals(0, calls.getFirst().getInteger("index"));
        assertEquals("{\"city\":\"Oslo\"}", calls.getFirst().getJsonObject("function").getString("arguments"));
        assertEquals("tool_calls", finish);
        JsonObject last = ev.getLast();
        assertTrue(last.getJsonArray("choices").isEmpty());
        assertTrue(last.getJsonObject("usage").getInteger("total_tokens") > 0);
    }

    @Test
    void streamWithoutIncludeUsageHasNoUsageChunk() throws Exception {
        fake.enqueue(FakeReply.text("a b"));
        List<JsonObject> ev = events(server.post("/v1/chat/completions", chat("x").put("stream", true)).body());
        for (JsonObject e : ev) {
            assertFalse(e.containsKey("usage"));
            assertEquals(1, e.getJsonArray("choices").size());
        }
        assertEquals("stop", ev.getLast().getJsonArray("choices").getJsonObject(0).getString("finish_reason"));
    }

    @Test
    void streamRefusedBeforeTheFirstTokenGetsItsHttpStatus() throws Exception {
        fake.enqueue(FakeReply.error(Status.Code.RESOURCE_EXHAUSTED, "admission queue full"));
        fake.failNextCalls(0, Status.Code.OK, "");
        try (var noRetry = fake.clientBuilder().retryPolicy(io.lightmesh.client.RetryPolicy.none()).build();
             TestServer s = new TestServer(noRetry, OpenAiOptions.defaults())) {
            HttpResponse<String> r = s.post("/v1/chat/completions", chat("x").put("stream", true));
            assertEquals(429, r.statusCode(), r.body());
            assertEquals("rate_limit_exceeded", error(r).getString("code"));
            assertEquals("1", r.headers().firstValue("retry-after").orElse(null));
        }
    }

    @Test
    void streamFailingMidwayEndsWithAnErrorEvent() throws Exception {
        fake.enqueue(FakeReply.text("a b c d").failAfter(2, Status.Code.UNAVAILABLE, "decode worker lost"));
        HttpResponse<String> r = server.post("/v1/chat/completions", chat("x").put("stream", true));
        assertEquals(200, r.statusCode());
        String[] blocks = r.body().split("\n\n");
        JsonObject last = new JsonObject(blocks[blocks.length - 1].substring(6));
        assertEquals("service_unavailable", last.getJsonObject("error").getString("code"));
        assertEquals(1, fake.requests().size(), "not retried after tokens were sent");
    }

    @Test
    void grpcErrorsMapToHttpStatuses() throws Exception {
        try (var noRetry = fake.clientBuilder().retryPolicy(io.lightmesh.client.RetryPolicy.none()).build();
             TestServer s = new TestServer(noRetry, OpenAiOptions.defaults().withAcceptAnyModel(true))) {
            Object[][] cases = {
                    {Status.Code.INVALID_ARGUMENT, 400, "invalid_request_error"},
                    {Status.Code.RESOURCE_EXHAUSTED, 429, "rate_limit_error"},
                    {Status.Code.UNAVAILABLE, 503, "server_error"},
                    {Status.Code.DEADLINE_EXCEEDED, 504, "server_error"},
                    {Status.Code.UNIMPLEMENTED, 501, "server_error"},
                    {Status.Code.INTERNAL, 500, "server_error"},
            };
            for (Object[] c : cases) {
                fake.enqueue(FakeReply.error((Status.Code) c[0], "from the server"));
                HttpResponse<String> r = s.post("/v1/chat/completions", chat("x"));
                assertEquals(c[1], r.statusCode(), c[0] + ": " + r.body());
                assertEquals(c[2], error(r).getString("type"));
                assertTrue(error(r).getString("message").contains("from the server"));
            }
        }
    }

    @Test
    void invalidBodiesAreRejectedBeforeTheServer() throws Exception {
        JsonArray badToolMsg = new JsonArray().add(msg("user", "x"))
                .add(new JsonObject().put("role", "tool").put("tool_call_id", "call_nope").put("content", "1"));
        JsonArray badArgs = new JsonArray().add(msg("user", "x")).add(new JsonObject().put("role", "assistant")
                .put("tool_calls", new JsonArray().add(new JsonObject().put("id", "c1").put("type", "function")
                        .put("function", new JsonObject().put("name", "f").put("arguments", "{not json")))));
        JsonObject badName = WEATHER_TOOL.copy();
        badName.getJsonObject("function").put("name", "get weather!");
        Object[][] cases = {
                {new JsonObject().put("messages", new JsonArray().add(msg("user", "x"))), "model"},
                {new JsonObject().put("model", MODEL), "messages"},
                {chat("x").put("messages", new JsonArray()), "messages"},
                {chat("x").put("messages", new JsonArray().add(msg("wizard", "x"))), "messages[0].role"},
                {chat("x").put("messages", new JsonArray().add(new JsonObject().put("role", "user"))), "messages[0].content"},
                {chat("x").put("messages", new JsonArray().add(new JsonObject().put("role", "user").put("content", new JsonArray()
                        .add(new JsonObject().put("type", "image_url").put("image_url", "http://x"))))), "messages[0].content[0].type"},
                {chat("x").put("messages", badToolMsg), "messages[1].tool_call_id"},
                {chat("x").put("messages", badArgs), "messages[1].tool_calls[0].function.arguments"},
                {chat("x").put("temperature", 3), "temperature"},
                {chat("x").put("temperature", "hot"), "temperature"},
                {chat("x").put("top_p", 0), "top_p"},
                {chat("x").put("max_tokens", 0), "max_tokens"},
                {chat("x").put("max_tokens", 1.5), "max_tokens"},
                {chat("x").put("n", 17), "n"},
                {chat("x").put("n", 0), "n"},
                {chat("x").put("stop", new JsonArray().add("a").add("b").add("c").add("d").add("e")), "stop"},
                {chat("x").put("stream_options", new JsonObject().put("include_usage", true)), "stream_options"},
                {chat("x").put("tools", new JsonArray().add(badName)), "tools[0].function.name"},
                {chat("x").put("tool_choice", "required"), "tool_choice"},
                {chat("x").put("tools", new JsonArray().add(WEATHER_TOOL)).put("tool_choice", "sometimes"), "tool_choice"},
                {chat("x").put("tools", new JsonArray().add(WEATHER_TOOL)).put("tool_choice", new JsonObject().put("type", "function")
                        .put("function", new JsonObject().put("name", "nope"))), "tool_choice"},
                {chat("x").put("max_thinking_tokens", -1), "max_thinking_tokens"},
                {chat("x").put("thinking_budget", "lots"), "thinking_budget"},
                {chat("x").put("presence_penalty", 2.5), "presence_penalty"},
                {chat("x").put("frequency_penalty", -2.5), "frequency_penalty"},
                {chat("x").put("repetition_penalty", 0), "repetition_penalty"},
                {chat("x").put("logprobs", "yes"), "logprobs"},
                {chat("x").put("logprobs", true).put("top_logprobs", 21), "top_logprobs"},
                {chat("x").put("top_logprobs", 2), "top_logprobs"},
                {chat("x").put("response_format", new JsonObject().put("type", "json_object")), "response_format"},
        };
        for (Object[] c : cases) {
            HttpResponse<String> r = server.post("/v1/chat/completions", (JsonObject) c[0]);
            assertEquals(400, r.statusCode(), c[1] + ": " + r.body());
            assertEquals("invalid_request_error", error(r).getString("type"), r.body());
            assertEquals(c[1], error(r).getString("param"), r.body());
        }
        for (String raw : new String[] {"{not json", "", "[1,2]", "\"text\""}) {
            HttpResponse<String> r = server.post("/v1/chat/completions", raw);
            assertEquals(400, r.statusCode(), raw);
            assertTrue(error(r).getString("message").contains("JSON"));
        }
        assertEquals(0, fake.requests().size(), "no invalid body reached the server");
    }

    @Test
    void unknownModelIs404AndModelsAreListed() throws Exception {
        HttpResponse<String> r = server.post("/v1/chat/completions", chat("x").put("model", "gpt-4o"));
        assertEquals(404, r.statusCode());
        assertEquals("model_not_found", error(r).getString("code"));
        assertEquals("model", error(r).getString("param"));
        assertEquals(0, fake.requests().size());

        assertEquals(200, server.post("/v1/chat/completions", chat("x").put("model", "minimax-m1")).statusCode(), "an alias");

        JsonObject list = new JsonObject(server.get("/v1/models").body());
        assertEquals("list", list.getString("object"));
        assertEquals(List.of(MODEL, "minimax-m1"), list.getJsonArray("data").stream().map(o -> ((JsonObject) o).getString("id")).toList());
        assertEquals("model", list.getJsonArray("data").getJsonObject(0).getString("object"));
        assertEquals(200, server.get("/v1/models/" + MODEL).statusCode());
        assertEquals(404, server.get("/v1/models/gpt-4o").statusCode());
    }

    @Test
    void modelLookupFailureIs503() throws Exception {
        try (var noRetry = fake.clientBuilder().retryPolicy(io.lightmesh.client.RetryPolicy.none()).build();
             TestServer s = new TestServer(noRetry, OpenAiOptions.defaults())) {
            fake.failNextCalls(1, Status.Code.UNAVAILABLE, "router starting");
            HttpResponse<String> r = s.get("/v1/models");
            assertEquals(503, r.statusCode());
            assertEquals("service_unavailable", error(r).getString("code"));
            assertEquals(200, s.get("/v1/models").statusCode(), "asked again after a failure");
        }
    }

    @Test
    void textCompletions() throws Exception {
        fake.enqueue(FakeReply.text(" upon a time").reasoning("raw mode keeps tags"));
        HttpResponse<String> r = server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", "Once"));
        assertEquals(200, r.statusCode(), r.body());
        JsonObject body = new JsonObject(r.body());
        assertEquals("text_completion", body.getString("object"));
        assertEquals("<think>\nraw mode keeps tags\n</think>\n upon a time", body.getJsonArray("choices").getJsonObject(0).getString("text"));
        GenerateRequest sent = fake.lastRequest();
        assertEquals("Once", sent.getPrompt());
        assertFalse(sent.getParseOutput());
        assertEquals(16, sent.getSampling().getMaxNewTokens(), "OpenAI's default max_tokens");

        fake.enqueue(FakeReply.text(" two three"));
        r = server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", new JsonArray().add("one")).put("echo", true)
                .put("max_tokens", 5));
        assertEquals("one two three", new JsonObject(r.body()).getJsonArray("choices").getJsonObject(0).getString("text"));

        fake.enqueue(FakeReply.text("x"));
        r = server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", new JsonArray().add(5).add(6).add(7)));
        assertEquals(200, r.statusCode(), r.body());
        assertEquals(List.of(5, 6, 7), fake.lastRequest().getTokenIds().getIdsList());

        fake.enqueue(FakeReply.text("a b c"));
        r = server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", "x").put("stream", true)
                .put("stream_options", new JsonObject().put("include_usage", true)));
        List<JsonObject> ev = events(r.body());
        StringBuilder text = new StringBuilder();
        for (JsonObject e : ev) if (!e.getJsonArray("choices").isEmpty()) text.append(e.getJsonArray("choices").getJsonObject(0).getString("text"));
        assertEquals("a b c", text.toString());
        assertEquals("stop", ev.get(ev.size() - 2).getJsonArray("choices").getJsonObject(0).getString("finish_reason"));
        assertTrue(ev.getLast().getJsonObject("usage").getInteger("completion_tokens") > 0);

        assertEquals("prompt", error(server.post("/v1/completions", new JsonObject().put("model", MODEL))).getString("param"));
        assertEquals("prompt", error(server.post("/v1/completions", new JsonObject().put("model", MODEL)
                .put("prompt", new JsonArray().add("a").add("b")))).getString("param"));
        assertEquals("suffix", error(server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", "a")
                .put("suffix", "z"))).getString("param"));
    }

    @Test
    void closingTheConnectionCancelsTheGeneration() throws Exception {
        fake.enqueue(FakeReply.text("a b c d e f g h i j k l").delay(Duration.ofMillis(100)), FakeReply.hang());
        int port = Integer.parseInt(server.base.substring(server.base.lastIndexOf(':') + 1));
        int sent = 0;
        for (String body : new String[] {chat("x").put("stream", true).encode(), chat("x").encode()}) {
            try (Socket s = new Socket("127.0.0.1", port)) {
                byte[] b = body.getBytes(StandardCharsets.UTF_8);
                s.getOutputStream().write(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                        + b.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
                s.getOutputStream().write(b);
                s.getOutputStream().flush();
                sent++;
                long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
                while (fake.requests().size() < sent && System.nanoTime() < end) Thread.sleep(5);
                assertEquals(sent, fake.requests().size(), "the generation started");
                if (body.contains("stream")) {
                    InputStream in = s.getInputStream();
                    while (in.available() == 0 && System.nanoTime() < end) Thread.sleep(5);
                    assertTrue(in.available() > 0, "tokens were streaming");
                }
            }
        }
        assertTrue(fake.awaitCancellations(2, Duration.ofSeconds(5)), "cancellations seen: " + fake.cancellations());
    }

    @Test
    void routesAndBodyLimits() throws Exception {
        HttpResponse<String> r = server.get("/v1/nothing");
        assertEquals(404, r.statusCode());
        assertEquals("unknown_url", error(r).getString("code"));
        r = server.get("/v1/chat/completions");
        assertEquals(405, r.statusCode());
        try (TestServer small = new TestServer(fake.client(), OpenAiOptions.defaults().withMaxBodyBytes(2048))) {
            r = small.post("/v1/chat/completions", chat("x".repeat(5000)));
            assertEquals(413, r.statusCode());
            assertEquals("request_too_large", error(r).getString("code"));
        }
    }

    @Test
    void apiKeyIsChecked() throws Exception {
        try (TestServer s = new TestServer(fake.client(), OpenAiOptions.defaults().withApiKey("sk-test"))) {
            HttpResponse<String> r = s.post("/v1/chat/completions", chat("x"));
            assertEquals(401, r.statusCode());
            assertEquals("invalid_api_key", error(r).getString("code"));
            r = s.http.send(HttpRequest.newBuilder(URI.create(s.base + "/v1/models")).header("Authorization", "Bearer sk-test").build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode());
        }
    }

    @Test
    void requestIdHeaderBecomesTheRequestId() throws Exception {
        HttpResponse<String> r = server.http.send(HttpRequest.newBuilder(URI.create(server.base + "/v1/chat/completions"))
                .header("x-request-id", "trace-42").POST(HttpRequest.BodyPublishers.ofString(chat("x").encode())).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals("trace-42", fake.lastRequest().getRequestId());
        assertEquals("chatcmpl-trace-42", new JsonObject(r.body()).getString("id"));
        assertEquals("trace-42", r.headers().firstValue("x-request-id").orElse(null));
    }
}
