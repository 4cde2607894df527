package io.lightmesh.openai;

import io.lightmesh.client.testing.FakeLightMesh;
import io.lightmesh.client.testing.FakeReply;
import io.lightmesh.proto.v1.SamplingParams;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Log-probabilities (chat and legacy shapes, streamed too, echo with prompt scores), several choices, penalties and
 * token ids on the OpenAI HTTP API, in front of the SDK's fake server (one token per delta, made-up numbers).
 */
class OpenAiLogprobsTest {
    private static final String MODEL = "minimax-m1-fake";
    private FakeLightMesh fake;
    private TestServer server;

    @BeforeEach
    void start() throws Exception {
        fake = FakeLightMesh.start();
        server = new TestServer(fake.client(), OpenAiOptions.defaults());
    }

    @AfterEach
    void stop() throws Exception {
        server.close();
        fake.close();
    }

    private static JsonObject chat(String userText) {
        return new JsonObject().put("model", MODEL)
                .put("messages", new JsonArray().add(new JsonObject().put("role", "user").put("content", userText)));
    }

    private static List<JsonObject> events(String body) {
        List<JsonObject> out = new ArrayList<>();
        String[] blocks = body.split("\n\n");
        assertEquals("data: [DONE]", blocks[blocks.length - 1]);
        for (int i = 0; i < blocks.length - 1; i++) out.add(new JsonObject(blocks[i].substring(6)));
        return out;
    }

    @Test
    void chatChoicesWithLogprobsAndTokenIds() throws Exception {
        fake.enqueue(FakeReply.text("Hello there"));
        HttpResponse<String> r = server.post("/v1/chat/completions", chat("Hi").put("logprobs", true).put("top_logprobs", 2)
                .put("n", 2).put("seed", 3).put("return_token_ids", true));
        assertEquals(200, r.statusCode(), r.body());
        SamplingParams sent = fake.lastRequest().getSampling();
        assertEquals(2, sent.getN());
        assertEquals(2, sent.getLogprobs());
        JsonObject body = new JsonObject(r.body());
        JsonArray choices = body.getJsonArray("choices");
        assertEquals(2, choices.size());
        for (int i = 0; i < 2; i++) {
            JsonObject c = choices.getJsonObject(i);
            assertEquals(i, c.getInteger("index"));
            assertEquals("Hello there", c.getJsonObject("message").getString("content"));
            JsonArray content = c.getJsonObject("logprobs").getJsonArray("content");
            assertEquals(2, content.size());
            JsonObject first = content.getJsonObject(0);
            assertEquals("Hello", first.getString("token"));
            assertEquals(-0.1, first.getDouble("logprob"), 1e-6);
            assertEquals(new JsonArray().add(72).add(101).add(108).add(108).add(111), first.getJsonArray("bytes"));
            assertEquals(2, first.getJsonArray("top_logprobs").size());
            assertEquals(" there", content.getJsonObject(1).getString("token"));
            assertEquals(2, c.getJsonArray("token_ids").size());
        }
        assertTrue(body.getJsonArray("prompt_token_ids").size() > 0);
        assertEquals(4, body.getJsonObject("usage").getInteger("completion_tokens"));

        fake.enqueue(FakeReply.text("Hi"));
        JsonObject plain = new JsonObject(server.post("/v1/chat/completions", chat("Hi")).body());
        assertNull(plain.getJsonArray("choices").getJsonObject(0).getValue("logprobs"), "not asked for");
        assertTrue(!fake.lastRequest().getSampling().hasLogprobs());
    }

    @Test
    void streamedChatChunksCarryTheirTokensLogprobs() throws Exception {
        fake.enqueue(FakeReply.text("one two three"));
        HttpResponse<String> r = server.post("/v1/chat/completions", chat("Count").put("stream", true).put("logprobs", true)
                .put("n", 2).put("stream_options", new JsonObject().put("include_usage", true)));
        assertEquals(200, r.statusCode(), r.body());
        Map<Integer, StringBuilder> text = new HashMap<>(), tokens = new HashMap<>();
        Map<Integer, String> finish = new HashMap<>();
        List<JsonObject> ev = events(r.body());
        for (JsonObject e : ev) {
            for (Object o : e.getJsonArray("choices")) {
                JsonObject c = (JsonObject) o;
                int i = c.getInteger("index");
                String content = c.getJsonObject("delta").getString("content");
                if (content != null) text.computeIfAbsent(i, k -> new StringBuilder()).append(content);
                JsonObject lp = c.getJsonObject("logprobs");
                if (lp != null) for (Object t : lp.getJsonArray("content")) tokens.computeIfAbsent(i, k -> new StringBuilder()).append(((JsonObject) t).getString("token"));
                if (c.getString("finish_reason") != null) finish.put(i, c.getString("finish_reason"));
            }
        }
        for (int i = 0; i < 2; i++) {
            assertEquals("one two three", text.get(i).toString());
            assertEquals("one two three", tokens.get(i).toString(), "the streamed log-probabilities name every token");
            assertEquals("stop", finish.get(i));
        }
        assertEquals(6, ev.getLast().getJsonObject("usage").getInteger("completion_tokens"));
    }

    @Test
    void legacyLogprobsWithEchoScoreThePrompt() throws Exception {
        fake.enqueue(FakeReply.text(" there was"));
        HttpResponse<String> r = server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", "Once upon a time")
                .put("echo", true).put("logprobs", 1).put("max_tokens", 5));
        assertEquals(200, r.statusCode(), r.body());
        assertEquals(1, fake.lastRequest().getSampling().getPromptLogprobs(), "echo with logprobs scores the prompt");
        JsonObject c = new JsonObject(r.body()).getJsonArray("choices").getJsonObject(0);
        assertEquals("Once upon a time there was", c.getString("text"));
        JsonObject lp = c.getJsonObject("logprobs");
        assertEquals(new JsonArray().add("Once").add(" upon").add(" a").add(" time").add(" there").add(" was"), lp.getJsonArray("tokens"));
        assertNull(lp.getJsonArray("token_logprobs").getValue(0), "nothing predicts the first token");
        assertNull(lp.getJsonArray("top_logprobs").getValue(0));
        assertEquals(-1.0, lp.getJsonArray("token_logprobs").getDouble(1), 1e-6);
        assertEquals(-0.1, lp.getJsonArray("token_logprobs").getDouble(4), 1e-6);
        assertEquals(new JsonArray().add(0).add(4).add(9).add(11).add(16).add(22), lp.getJsonArray("text_offset"));
        assertEquals(1, lp.getJsonArray("top_logprobs").getJsonObject(4).size());

        fake.enqueue(FakeReply.text(" there was"));
        HttpResponse<String> s = server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", "Once upon a time")
                .put("echo", true).put("logprobs", 0).put("stream", true));
        List<String> streamedTokens = new ArrayList<>();
        StringBuilder text = new StringBuilder();
        for (JsonObject e : events(s.body())) {
            JsonObject ch = e.getJsonArray("choices").getJsonObject(0);
            text.append(ch.getString("text"));
            if (ch.getJsonObject("logprobs") != null) for (Object t : ch.getJsonObject("logprobs").getJsonArray("tokens")) streamedTokens.add((String) t);
        }
        assertEquals("Once upon a time there was", text.toString());
        assertEquals(List.of("Once", " upon", " a", " time", " there", " was"), streamedTokens);
    }

    @Test
    void penaltiesAndLogprobLimitsReachTheServer() throws Exception {
        fake.enqueue(FakeReply.text("ok"));
        HttpResponse<String> r = server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", "x")
                .put("presence_penalty", 0.5).put("frequency_penalty", -1).put("repetition_penalty", 1.2).put("logprobs", 20));
        assertEquals(200, r.statusCode(), r.body());
        SamplingParams s = fake.lastRequest().getSampling();
        assertEquals(0.5f, s.getPresencePenalty());
        assertEquals(-1f, s.getFrequencyPenalty());
        assertEquals(1.2f, s.getRepetitionPenalty());
        assertEquals(20, s.getLogprobs());
        HttpResponse<String> bad = server.post("/v1/completions", new JsonObject().put("model", MODEL).put("prompt", "x").put("logprobs", 21));
        assertEquals(400, bad.statusCode());
        assertEquals("logprobs", new JsonObject(bad.body()).getJsonObject("error").getString("param"));
        assertTrue(new String(bad.body().getBytes(StandardCharsets.UTF_8), StandardCharsets.UTF_8).contains("<= 20"), bad.body());
    }
}
