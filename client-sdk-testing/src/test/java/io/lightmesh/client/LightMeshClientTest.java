package io.lightmesh.client;

import io.grpc.Status;
import io.lightmesh.client.testing.FakeLightMesh;
import io.lightmesh.client.testing.FakeReply;
import io.lightmesh.proto.v1.GenerateRequest;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The client against the in-process fake server: every call kind, retries, deadlines, cancellation. */
class LightMeshClientTest {
    private static final Tool WEATHER = Tool.function("get_weather", "Current weather in a city",
            "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}");
    private static final RetryPolicy FAST_RETRY = RetryPolicy.defaults().withBackoff(Duration.ofMillis(1), Duration.ofMillis(5));

    private FakeLightMesh fake;
    private LightMeshClient client;

    @BeforeEach
    void start() {
        fake = FakeLightMesh.start();
        client = fake.clientBuilder().retryPolicy(FAST_RETRY).build();
    }

    @AfterEach
    void stop() {
        client.close();
        fake.close();
    }

    @Test
    void chatSendsMessagesToolsAndSamplingAndReturnsStructuredAnswer() {
        fake.enqueue(FakeReply.text("").reasoning("The user wants the weather.").toolCall("get_weather", "{\"city\":\"Paris\"}"));
        Completion c = client.generate(GenerationRequest.chat(ChatMessage.system("Be brief."), ChatMessage.user("Weather in Paris?"))
                .tools(WEATHER).temperature(0.7).topP(0.9).seed(42).maxTokens(512).thinkingBudget(ThinkingBudget.M1_40K)
                .stop("\n\n").build());

        assertEquals(FinishReason.TOOL_CALLS, c.finishReason());
        assertEquals("The user wants the weather.", c.reasoning());
        assertEquals("", c.text());
        assertEquals(1, c.toolCalls().size());
        ToolCall call = c.toolCalls().getFirst();
        assertEquals("get_weather", call.name());
        assertEquals("{\"city\":\"Paris\"}", call.argumentsJson());
        assertFalse(call.id().isEmpty());

        GenerateRequest sent = fake.lastRequest();
        assertTrue(sent.getParseOutput(), "chat asks for parsed output");
        assertEquals(2, sent.getChat().getMessagesCount());
        assertEquals(io.lightmesh.proto.v1.Role.ROLE_SYSTEM, sent.getChat().getMessages(0).getRole());
        assertEquals("Weather in Paris?", sent.getChat().getMessages(1).getContent());
        assertEquals("get_weather", sent.getChat().getTools(0).getName());
        assertEquals(40_000, sent.getSampling().getMaxThinkingTokens());
        assertEquals(0.7f, sent.getSampling().getTemperature());
        assertEquals(0.9f, sent.getSampling().getTopP());
        assertEquals(42, sent.getSampling().getSeed());
        assertEquals(512, sent.getSampling().getMaxNewTokens());
        assertEquals(List.of("\n\n"), sent.getSampling().getStopList());
        assertEquals(c.requestId(), sent.getRequestId(), "the client assigns the request id");
    }

    @Test
    void toolRoundTripReplaysTheCallAndTheResult() {
        fake.enqueue(FakeReply.text("").toolCall("get_weather", "{\"city\":\"Paris\"}"), FakeReply.text("Sunny, 21 C."));
        List<ChatMessage> chat = new ArrayList<>(List.of(ChatMessage.user("Weather in Paris?")));
        Completion first = client.chat(chat, List.of(WEATHER));
        chat.add(ChatMessage.assistant(first));
        chat.add(ChatMessage.toolResult(first.toolCalls().getFirst(), "{\"sky\":\"sunny\",\"celsius\":21}"));
        Completion second = client.chat(chat, List.of(WEATHER));

        assertEquals("Sunny, 21 C.", second.text());
        assertEquals(FinishReason.STOP, second.finishReason());
        var sent = fake.lastRequest().getChat();
        assertEquals(3, sent.getMessagesCount());
        assertEquals(first.toolCalls().getFirst().id(), sent.getMessages(1).getToolCalls(0).getId());
        assertEquals(io.lightmesh.proto.v1.Role.ROLE_TOOL, sent.getMessages(2).getRole());
        assertEquals(first.toolCalls().getFirst().id(), sent.getMessages(2).getToolCallId());
        assertEquals("get_weather", sent.getMessages(2).getName());
    }

    @Test
    void rawPromptKeepsTheModelsTagsInTheText() {
        fake.enqueue(FakeReply.text("42").reasoning("6 times 7"));
        Completion c = client.generate(GenerationRequest.prompt("6*7=").build());
        assertEquals("<think>\n6 times 7\n</think>\n42", c.text());
        assertEquals("", c.reasoning());
        assertFalse(fake.lastRequest().getParseOutput());
    }

    @Test
    void streamIteratorDeliversReasoningThenTextThenTheLastDelta() {
        fake.enqueue(FakeReply.text("Paris is sunny.").reasoning("Check the weather."));
        List<Delta> deltas = new ArrayList<>();
        try (GenerationStream s = client.stream(GenerationRequest.chat(ChatMessage.user("Weather?")).build())) {
            for (Delta d : s) deltas.add(d);
        }
        assertTrue(deltas.size() >= 4);
        assertFalse(deltas.getFirst().reasoning().isEmpty());
        assertTrue(deltas.getLast().isLast());
        assertEquals(1, deltas.stream().filter(Delta::isLast).count());
        Completion c = Completion.of(deltas);
        assertEquals("Paris is sunny.", c.text());
        assertEquals("Check the weather.", c.reasoning());
        assertEquals(FinishReason.STOP, c.finishReason());
        assertEquals(deltas.size() - 1, c.usage().completionTokens());
        assertEquals(3, c.usage().reasoningTokens()); // "Check", " the", " weather."
    }

    @Test
    void streamCarriesToolCallsWhole() {
        fake.enqueue(FakeReply.text("Let me check.").toolCall("get_weather", "{\"city\":\"Oslo\"}").toolCall("get_weather", "{\"city\":\"Rome\"}"));
        Completion c = client.stream(GenerationRequest.chat(ChatMessage.user("Oslo and Rome?")).tools(WEATHER).build()).toCompletion();
        assertEquals(FinishReason.TOOL_CALLS, c.finishReason());
        assertEquals(List.of("{\"city\":\"Oslo\"}", "{\"city\":\"Rome\"}"), c.toolCalls().stream().map(ToolCall::argumentsJson).toList());
        assertEquals(List.of(0, 1), c.toolCalls().stream().map(ToolCall::index).toList());
    }

    @Test
    void publisherFollowsDemandAndCompletes() throws Exception {
        fake.enqueue(FakeReply.text("one two three four five"));
        List<Delta> got = new ArrayList<>();
        CountDownLatch done = new CountDownLatch(1);
        AtomicReference<Throwable> error = new AtomicReference<>();
        client.publisher(GenerationRequest.prompt("count").build()).subscribe(new Flow.Subscriber<>() {
            Flow.Subscription sub;
            @Override public void onSubscribe(Flow.Subscription s) { sub = s; s.request(1); }
            @Override public void onNext(Delta d) { got.add(d); sub.request(1); }
            @Override public void onError(Throwable t) { error.set(t); done.countDown(); }
            @Override public void onComplete() { done.countDown(); }
        });
        assertTrue(done.await(5, TimeUnit.SECONDS));
        assertEquals(null, error.get());
        assertEquals("one two three four five", Completion.of(got).text());
    }

    @Test
    void publisherWithoutDemandDeliversNothing() throws Exception {
        fake.enqueue(FakeReply.text("a b c"));
        List<Delta> got = new java.util.concurrent.CopyOnWriteArrayList<>();
        AtomicReference<Flow.Subscription> sub = new AtomicReference<>();
        client.publisher(GenerationRequest.prompt("x").build()).subscribe(new Flow.Subscriber<>() {
            @Override public void onSubscribe(Flow.Subscription s) { sub.set(s); }
            @Override public void onNext(Delta d) { got.add(d); }
            @Override public void onError(Throwable t) {}
            @Override public void onComplete() {}
        });
        Thread.sleep(200);
        assertEquals(0, got.size(), "no request(n), no deltas");
        sub.get().request(2);
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (got.size() < 2 && System.nanoTime() < end) Thread.sleep(5);
        Thread.sleep(100);   // no more than asked for
        assertEquals(2, got.size());
        sub.get().cancel();
    }

    @Test
    void publisherCancelReachesTheServer() throws Exception {
        fake.enqueue(FakeReply.text("a b c d e f g h").delay(Duration.ofMillis(100)));
        CountDownLatch first = new CountDownLatch(1);
        client.publisher(GenerationRequest.prompt("x").build()).subscribe(new Flow.Subscriber<>() {
            Flow.Subscription sub;
            @Override public void onSubscribe(Flow.Subscription s) { sub = s; s.request(Long.MAX_VALUE); }
            @Override public void onNext(Delta d) { sub.cancel(); first.countDown(); }
            @Override public void onError(Throwable t) {}
            @Override public void onComplete() {}
        });
        assertTrue(first.await(5, TimeUnit.SECONDS));
        assertTrue(fake.awaitCancellations(1, Duration.ofSeconds(5)));
    }

    @Test
    void asyncCompletesAndItsCancellationReachesTheServer() throws Exception {
        fake.enqueue(FakeReply.text("hello"));
        assertEquals("hello", client.generateAsync(GenerationRequest.prompt("hi").build()).get(5, TimeUnit.SECONDS).text());

        fake.enqueue(FakeReply.hang());
        CompletableFuture<Completion> f = client.generateAsync(GenerationRequest.prompt("hi").build());
        awaitRequests(2);
        assertTrue(f.cancel(true));
        assertTrue(fake.awaitCancellations(1, Duration.ofSeconds(5)));
    }

    @Test
    void closingAStreamEarlyCancelsItOnTheServer() throws Exception {
        fake.enqueue(FakeReply.text("a b c d e f g h i j").delay(Duration.ofMillis(50)));
        try (GenerationStream s = client.stream(GenerationRequest.prompt("x").build())) {
            assertTrue(s.hasNext());
            s.next();
        }
        assertTrue(fake.awaitCancellations(1, Duration.ofSeconds(5)));
    }

    @Test
    void cancelEndsIterationQuietly() throws Exception {
        fake.enqueue(FakeReply.hang());
        GenerationStream s = client.stream(GenerationRequest.prompt("x").build());
        Thread t = new Thread(() -> { awaitRequests(1); sleep(50); s.cancel(); });
        t.start();
        assertFalse(s.hasNext());
        t.join();
        assertTrue(fake.awaitCancellations(1, Duration.ofSeconds(5)));
    }

    @Test
    void interruptingABlockingCallCancelsIt() throws Exception {
        fake.enqueue(FakeReply.hang());
        AtomicReference<LightMeshException> thrown = new AtomicReference<>();
        Thread t = new Thread(() -> {
            try {
                client.generate(GenerationRequest.prompt("x").build());
            } catch (LightMeshException e) {
                thrown.set(e);
            }
        });
        t.start();
        awaitRequests(1);
        t.interrupt();
        t.join(5000);
        assertEquals(Status.Code.CANCELLED, thrown.get().code());
        assertTrue(fake.awaitCancellations(1, Duration.ofSeconds(5)));
    }

    @Test
    void retriesUnavailableWithTheSameRequestId() {
        fake.failNextCalls(2, Status.Code.UNAVAILABLE, "no decode worker reachable");
        fake.enqueue(FakeReply.text("ok"));
        Completion c = client.generate(GenerationRequest.prompt("x").build());
        assertEquals("ok", c.text());
        List<GenerateRequest> attempts = fake.requests();
        assertEquals(3, attempts.size());
        assertEquals(1, attempts.stream().map(GenerateRequest::getRequestId).distinct().count());
    }

    @Test
    void retriesResourceExhaustedStreamBeforeAnyToken() {
        fake.failNextCalls(1, Status.Code.RESOURCE_EXHAUSTED, "admission queue full");
        fake.enqueue(FakeReply.text("a b"));
        assertEquals("a b", client.stream(GenerationRequest.prompt("x").build()).toCompletion().text());
        assertEquals(2, fake.requests().size());
    }

    @Test
    void neverRetriesAfterTokensWereStreamed() {
        fake.enqueue(FakeReply.text("a b c d").failAfter(2, Status.Code.UNAVAILABLE, "decode worker lost"));
        List<String> seen = new ArrayList<>();
        GenerationStream s = client.stream(GenerationRequest.prompt("x").build());
        LightMeshException e = assertThrows(LightMeshException.class, () -> { while (s.hasNext()) seen.add(s.next().text()); });
        assertEquals(Status.Code.UNAVAILABLE, e.code());
        assertTrue(e.partial());
        assertEquals(1, e.attempts());
        assertEquals(List.of("a", " b"), seen);
        assertEquals(1, fake.requests().size());
    }

    @Test
    void givesUpAfterMaxAttempts() {
        fake.failNextCalls(10, Status.Code.UNAVAILABLE, "down");
        LightMeshException e = assertThrows(LightMeshException.class, () -> client.generate(GenerationRequest.prompt("x").build()));
        assertEquals(Status.Code.UNAVAILABLE, e.code());
        assertEquals(4, e.attempts());
        assertTrue(e.retryable());
        assertEquals(4, fake.requests().size());
    }

    @Test
    void invalidArgumentIsNotRetriedAndNamesTheField() {
        LightMeshException e = assertThrows(LightMeshException.class,
                () -> client.generate(GenerationRequest.tokens().build()));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
        assertTrue(e.description().contains("token_ids"), e.description());
        assertEquals(1, e.attempts());
        assertEquals(1, fake.requests().size());
    }

    @Test
    void deadlineEndsTheCallAndTheServerSeesIt() throws Exception {
        fake.enqueue(FakeReply.hang(), FakeReply.hang());
        LightMeshException e = assertThrows(LightMeshException.class,
                () -> client.generate(GenerationRequest.prompt("x").deadline(Duration.ofMillis(200)).build()));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
        try (LightMeshClient quick = fake.clientBuilder().defaultDeadline(Duration.ofMillis(200)).build()) {
            GenerationStream s = quick.stream(GenerationRequest.prompt("x").build());
            assertEquals(Status.Code.DEADLINE_EXCEEDED, assertThrows(LightMeshException.class, s::hasNext).code());
        }
        assertTrue(fake.awaitCancellations(2, Duration.ofSeconds(5)));
    }

    @Test
    void retriesStopAtTheDeadline() {
        fake.failNextCalls(1000, Status.Code.UNAVAILABLE, "down");
        try (LightMeshClient patient = fake.clientBuilder()
                .retryPolicy(RetryPolicy.defaults().withMaxAttempts(1000).withBackoff(Duration.ofMillis(20), Duration.ofMillis(20))).build()) {
            long t0 = System.nanoTime();
            LightMeshException e = assertThrows(LightMeshException.class,
                    () -> patient.generate(GenerationRequest.prompt("x").deadline(Duration.ofMillis(300)).build()));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms < 2000, "took " + ms + " ms");
            assertTrue(e.attempts() > 1 && e.attempts() < 1000, "attempts " + e.attempts());
        }
    }

    @Test
    void closingTheClientEndsCallsWaitingToRetry() throws Exception {
        fake.failNextCalls(1000, Status.Code.UNAVAILABLE, "down");
        LightMeshClient closing = fake.clientBuilder()
                .retryPolicy(RetryPolicy.defaults().withMaxAttempts(1000).withBackoff(Duration.ofMillis(100), Duration.ofMillis(100))).build();
        CompletableFuture<Completion> f = closing.generateAsync(GenerationRequest.prompt("x").build());
        awaitRequests(1);
        closing.close();
        var e = assertThrows(java.util.concurrent.ExecutionException.class, () -> f.get(5, TimeUnit.SECONDS));
        assertEquals(Status.Code.UNAVAILABLE, ((LightMeshException) e.getCause()).code());
    }

    @Test
    void apiKeyIsSentAsBearerToken() {
        fake.requireApiKey("s3cret");
        assertEquals(Status.Code.UNAUTHENTICATED,
                assertThrows(LightMeshException.class, () -> client.modelInfo()).code());
        try (LightMeshClient withKey = fake.clientBuilder().apiKey("s3cret").build()) {
            assertEquals("minimax-m1-fake", withKey.modelInfo().modelId());
        }
    }

    @Test
    void tokenizeModelInfoAndHealth() {
        Tokens t = client.tokenize("Hello brave new world");
        assertEquals(4, t.count());
        assertEquals("Hello brave new world", String.join("", t.pieces()));
        Tokens chat = client.tokenize(List.of(ChatMessage.user("Hi")), List.of(WEATHER));
        assertTrue(String.join("", chat.pieces()).contains("<tools>"));
        assertTrue(String.join("", chat.pieces()).endsWith("ai name=assistant\n"));

        ModelInfo info = client.modelInfo();
        assertEquals("minimax-m1-fake", info.modelId());
        assertEquals(80, info.numLayers());

        assertTrue(client.health().serving());
        fake.serving(false);
        assertFalse(client.health().serving());
    }

    @Test
    void tokenIdsAndStopStringComeBack() {
        fake.respondWith(r -> FakeReply.text("x y").matchedStop("END"));
        Completion c = client.generate(GenerationRequest.tokens(1, 2, 3).returnTokenIds(true).stop("END").build());
        assertEquals(FinishReason.STOP, c.finishReason());
        assertEquals("END", c.matchedStop());
        assertEquals(3, c.usage().promptTokens());
        assertTrue(fake.lastRequest().getReturnTokenIds());
        assertEquals(List.of(1, 2, 3), fake.lastRequest().getTokenIds().getIdsList());
    }

    /**
     * Waits until the fake has received at least n generation requests (the call reached the server). At least:
     * on a loaded machine a retrying call may already have sent its next attempt by the time this thread looks.
     */
    private void awaitRequests(int n) {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (fake.requests().size() < n && System.nanoTime() < end) sleep(5);
        assertTrue(fake.requests().size() >= n, "requests received: " + fake.requests().size() + ", wanted " + n);
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
