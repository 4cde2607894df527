package io.lightmesh.launcher.chaos;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

/**
 * One client request of the chaos load, through a router's OpenAI-compatible API: a completion or a chat, streamed
 * (server-sent events) or not, always greedy with {@code return_token_ids}, so that the token ids the client
 * receives (every chunk's, in order: a duplicated or lost token shows) can be checked against the in-process engine
 * ({@link Expected}). The outcome is one of {@link Outcome.Kind}: right, wrong, failed with the error the client
 * saw, or hung (no complete answer within the deadline).
 */
final class ChaosLoad {
    /** The four request shapes of the mixed load. */
    enum Shape {
        COMPLETION(false, false), COMPLETION_STREAM(false, true), CHAT(true, false), CHAT_STREAM(true, true);

        final boolean chat, stream;

        Shape(boolean chat, boolean stream) {
            this.chat = chat;
            this.stream = stream;
        }
    }

    /** What happened to one request. */
    record Outcome(int seq, String phase, Shape shape, String router, Kind kind, String detail, long startMs, long millis) {
        enum Kind { RIGHT, WRONG, FAILED, HUNG }
    }

    private static final ObjectMapper JSON = new ObjectMapper();
    static final List<String> PROMPTS = List.of(
            "Once upon a time", "The meaning of life is", "In a distant galaxy", "A recipe for bread:",
            "The mesh carries every token", "Kafka keeps the queue", "Experts compute in parallel", "Hello, my name is",
            "Write a short poem about the sea", "List three colours", "Why is the sky blue?", "Tell me about trains",
            "What is two plus two?", "Describe a cat", "The old lighthouse", "Summer rain");

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(3))
            .version(HttpClient.Version.HTTP_1_1).build();
    private final Expected expected;
    private final String model;
    private final int maxTokens;
    private final long deadlineMs;
    private final AtomicInteger rr = new AtomicInteger();

    ChaosLoad(Expected expected, String model, int maxTokens, long deadlineMs) {
        this.expected = expected;
        this.model = model;
        this.maxTokens = maxTokens;
        this.deadlineMs = deadlineMs;
    }

    /** The request {@code seq} of the load: its shape and prompt follow from its number, so a run is repeatable. */
    Outcome run(int seq, String phase, Supplier<List<String>> routers) {
        Shape shape = Shape.values()[seq % Shape.values().length];
        String prompt = PROMPTS.get((seq / Shape.values().length) % PROMPTS.size()) + (seq % 3 == 0 ? "" : " #" + (seq % 7));
        long t0 = System.currentTimeMillis();
        long until = t0 + deadlineMs;
        List<String> urls = routers.get();
        int first = Math.floorMod(rr.getAndIncrement(), urls.size());
        String router = urls.get(first);
        // a router that refuses the connection never saw the request: the next one is tried (what a load balancer
        // in front of the routers does); once the request is sent, its outcome is what this client gets
        for (int i = 0; ; i++) {
            router = urls.get((first + i) % urls.size());
            try {
                String detail = once(router, shape, prompt, until);
                return new Outcome(seq, phase, shape, router, detail == null ? Outcome.Kind.RIGHT : Outcome.Kind.WRONG, detail, t0,
                        System.currentTimeMillis() - t0);
            } catch (TimeoutException e) {
                return new Outcome(seq, phase, shape, router, Outcome.Kind.HUNG, "no complete answer within " + deadlineMs + " ms", t0,
                        System.currentTimeMillis() - t0);
            } catch (Failure f) {
                if (f.notSent && i + 1 < urls.size() * 3 && System.currentTimeMillis() < until - 1000) {
                    sleep(i + 1 >= urls.size() ? 500 : 0);
                    continue;
                }
                return new Outcome(seq, phase, shape, router, Outcome.Kind.FAILED, f.getMessage(), t0, System.currentTimeMillis() - t0);
            }
        }
    }

    /** A failure the client saw; {@code notSent}: the connection was refused, so nothing reached the router. */
    static final class Failure extends Exception {
        final boolean notSent;

        Failure(String message, boolean notSent) {
            super(message);
            this.notSent = notSent;
        }
    }

    /** One try: null when the answer is right, else why it is wrong. */
    private String once(String router, Shape shape, String prompt, long until) throws TimeoutException, Failure {
        ObjectNode body = JSON.createObjectNode().put("model", model).put("max_tokens", maxTokens).put("temperature", 0)
                .put("return_token_ids", true).put("stream", shape.stream);
        if (shape.chat) body.putArray("messages").addObject().put("role", "user").put("content", prompt);
        else body.put("prompt", prompt);
        HttpRequest req = HttpRequest.newBuilder(URI.create(router + (shape.chat ? "/v1/chat/completions" : "/v1/completions")))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body.toString())).build();
        long left = until - System.currentTimeMillis();
        CompletableFuture<HttpResponse<String>> f = http.sendAsync(req, HttpResponse.BodyHandlers.ofString());
        HttpResponse<String> r;
        try {
            r = f.get(Math.max(1, left), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            f.cancel(true);
            throw e;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Failure("interrupted", false);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            boolean refused = c instanceof ConnectException || (c != null && c.getCause() instanceof ConnectException);
            throw new Failure("connection: " + c, refused);
        }
        if (r.statusCode() != 200) {
            String retry = r.headers().firstValue("Retry-After").map(v -> " (Retry-After " + v + ")").orElse("");
            throw new Failure("HTTP " + r.statusCode() + retry + " " + errorMessage(r.body()), false);
        }
        List<Integer> promptIds = new ArrayList<>(), ids = new ArrayList<>();
        StringBuilder text = new StringBuilder();
        String finish = null;
        try {
            if (shape.stream) {
                boolean done = false;
                for (String line : (Iterable<String>) r.body().lines()::iterator) {
                    if (!line.startsWith("data: ")) continue;
                    String data = line.substring(6).trim();
                    if (data.equals("[DONE]")) { done = true; break; }
                    JsonNode c = JSON.readTree(data);
                    if (c.has("error")) throw new Failure("stream error: " + c.get("error").path("message").asText(), false);
                    ints(c.path("prompt_token_ids"), promptIds);
                    for (JsonNode ch : c.path("choices")) {
                        ints(ch.path("prompt_token_ids"), promptIds);
                        ints(ch.path("token_ids"), ids);
                        text.append(shape.chat ? ch.path("delta").path("content").asText("") : ch.path("text").asText(""));
                        if (ch.hasNonNull("finish_reason")) finish = ch.get("finish_reason").asText();
                    }
                }
                if (!done) throw new Failure("stream ended without [DONE] after " + ids.size() + " tokens", false);
            } else {
                JsonNode c = JSON.readTree(r.body());
                ints(c.path("prompt_token_ids"), promptIds);
                JsonNode ch = c.path("choices").path(0);
                ints(ch.path("prompt_token_ids"), promptIds);
                ints(ch.path("token_ids"), ids);
                text.append(shape.chat ? ch.path("message").path("content").asText("") : ch.path("text").asText(""));
                finish = ch.path("finish_reason").asText(null);
            }
        } catch (IOException e) {
            return "unreadable answer: " + e.getMessage();
        }
        if (finish == null) return "no finish_reason";
        if (promptIds.isEmpty()) return "no prompt_token_ids";
        if (!shape.chat && !promptIds.equals(expected.encode(prompt))) return "prompt tokens differ from the tokenizer's";
        Expected.Answer want = expected.answer(promptIds, maxTokens);
        if (!want.tokens().equals(ids)) return "tokens " + ids + " != engine's " + want.tokens();
        if (!shape.chat && !want.text().equals(text.toString())) return "text differs from the engine's";
        return null;
    }

    private static void ints(JsonNode a, List<Integer> into) {
        if (a.isArray()) for (JsonNode n : a) into.add(n.asInt());
    }

    private static String errorMessage(String body) {
        try {
            JsonNode e = JSON.readTree(body).path("error");
            return e.path("code").asText("") + ": " + e.path("message").asText(body);
        } catch (IOException ex) {
            return body.length() > 200 ? body.substring(0, 200) : body;
        }
    }

    private static void sleep(long ms) {
        try { Thread.sleep(ms); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
    }
}
