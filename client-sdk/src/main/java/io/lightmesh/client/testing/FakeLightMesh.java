package io.lightmesh.client.testing;

import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.lightmesh.client.FinishReason;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.client.internal.Protos;
import io.lightmesh.proto.v1.ChatInput;
import io.lightmesh.proto.v1.ChatMessage;
import io.lightmesh.proto.v1.ComponentHealth;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.HealthRequest;
import io.lightmesh.proto.v1.HealthResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.ModelInfo;
import io.lightmesh.proto.v1.ModelInfoRequest;
import io.lightmesh.proto.v1.Role;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.ServingStatus;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.TokenizeResponse;
import io.lightmesh.proto.v1.Tool;
import io.lightmesh.proto.v1.ToolCall;
import io.lightmesh.proto.v1.Usage;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * A fake LightMesh server for tests of code that uses {@link LightMeshClient} (or any gRPC client of
 * {@code lightmesh.v1.Inference}): generation calls are answered with scripted {@link FakeReply replies}, and the
 * requests received are kept for assertions. No model is run.
 *
 * <pre>{@code
 * try (FakeLightMesh fake = FakeLightMesh.start()) {
 *     fake.enqueue(FakeReply.text("Hello!"));
 *     Completion c = myCode(fake.client());
 *     assertEquals("Hello!", c.text());
 *     assertEquals(ROLE_USER, fake.lastRequest().getChat().getMessages(0).getRole());
 * }
 * }</pre>
 *
 * Generation calls take the queued replies in order, then the {@link #respondWith responder} (by default: echo the
 * last user message). Like the real server it rejects an invalid request with {@code INVALID_ARGUMENT}, honours
 * deadlines and cancellation, and renders the M1 chat template for {@code Tokenize} (with a toy tokenizer: one token
 * per word). Thread-safe.
 */
public final class FakeLightMesh implements AutoCloseable {
    private static final ModelInfo DEFAULT_MODEL = ModelInfo.newBuilder().setModelId("minimax-m1-fake").setModelType("minimax_m1")
            .setVocabSize(200_064).setHiddenSize(6144).setNumLayers(80).setNumHeads(64).setNumKvHeads(8).setHeadDim(128)
            .setNumExperts(32).setTopK(2).setMaxPositions(10_240_000).setParameterCount(456_000_000_000L)
            .setActiveParameterCount(45_900_000_000L).setEosTokenId(200_020).setDefaultMaxNewTokens(8192)
            .setMaxPromptTokens(1_000_000).setServingMode("fake").build();

    private final Server server;
    private final String inProcessName;     // null for a socket server
    private final ManagedChannel channel;
    private final LightMeshClient client;
    private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "fake-lightmesh");
        t.setDaemon(true);
        return t;
    });
    private final Deque<FakeReply> queue = new ConcurrentLinkedDeque<>();
    private final List<GenerateRequest> requests = new CopyOnWriteArrayList<>();
    private final AtomicInteger cancellations = new AtomicInteger();
    private final AtomicInteger failuresLeft = new AtomicInteger();
    private volatile Status failure = Status.OK;
    private volatile Function<GenerateRequest, FakeReply> responder = FakeLightMesh::echo;
    private volatile ModelInfo modelInfo = DEFAULT_MODEL;
    private volatile boolean serving = true;
    private volatile String apiKey;

    private FakeLightMesh(boolean socket) {
        ServerBuilder<?> sb;
        if (socket) {
            inProcessName = null;
            sb = Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create());
        } else {
            inProcessName = "fake-lightmesh-" + UUID.randomUUID();
            sb = InProcessServerBuilder.forName(inProcessName);
        }
        try {
            server = sb.addService(ServerInterceptors.intercept(new Service(), new Gate())).build().start();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start the fake server", e);
        }
        channel = socket
                ? Grpc.newChannelBuilderForAddress("127.0.0.1", server.getPort(), io.grpc.InsecureChannelCredentials.create()).build()
                : InProcessChannelBuilder.forName(inProcessName).build();
        client = LightMeshClient.builder().channel(channel).build();
    }

    /** Starts a fake reached in-process (no socket). */
    public static FakeLightMesh start() { return new FakeLightMesh(false); }

    /** Starts a fake listening on a free port of 127.0.0.1 (see {@link #target()}), for clients in other processes. */
    public static FakeLightMesh startOnLocalPort() { return new FakeLightMesh(true); }

    /** {@code 127.0.0.1:port} for a socket fake; null for an in-process one. */
    public String target() { return inProcessName == null ? "127.0.0.1:" + server.getPort() : null; }

    /** A client of this fake with default settings; closed with the fake. */
    public LightMeshClient client() { return client; }

    /** A client builder already pointing at this fake, to set a retry policy, deadline or API key. */
    public LightMeshClient.Builder clientBuilder() { return LightMeshClient.builder().channel(channel); }

    /** Queues replies for the next generation calls, in order. */
    public FakeLightMesh enqueue(FakeReply... replies) {
        for (FakeReply r : replies) queue.add(Objects.requireNonNull(r));
        return this;
    }

    /** How generation calls are answered once the queue is empty (default: echo the last user message, or the prompt). */
    public FakeLightMesh respondWith(Function<GenerateRequest, FakeReply> responder) {
        this.responder = Objects.requireNonNull(responder);
        return this;
    }

    /** Fails the next {@code n} calls of any method with this status (before they reach the script). */
    public FakeLightMesh failNextCalls(int n, Status.Code code, String message) {
        failure = Status.fromCode(code).withDescription(message);
        failuresLeft.set(n);
        return this;
    }

    /** The model described by {@code GetModelInfo} (default: a MiniMax-M1-shaped model named "minimax-m1-fake"). */
    public FakeLightMesh modelInfo(ModelInfo info) {
        modelInfo = Objects.requireNonNull(info);
        return this;
    }

    /** Whether {@code Health} says SERVING (default true). */
    public FakeLightMesh serving(boolean serving) {
        this.serving = serving;
        return this;
    }

    /** Rejects calls without {@code authorization: Bearer <key>} with UNAUTHENTICATED; null: no check (default). */
    public FakeLightMesh requireApiKey(String key) {
        apiKey = key;
        return this;
    }

    /** The generation requests received, every attempt of a retried call included, in order. */
    public List<GenerateRequest> requests() { return List.copyOf(requests); }

    /** The last generation request received. */
    public GenerateRequest lastRequest() {
        if (requests.isEmpty()) throw new IllegalStateException("no generation request received");
        return requests.getLast();
    }

    /** Generation calls that were cancelled by the client or ran past their deadline while the fake was answering. */
    public int cancellations() { return cancellations.get(); }

    /** Waits until at least {@code n} cancellations were seen; false on timeout. */
    public boolean awaitCancellations(int n, Duration timeout) throws InterruptedException {
        long end = System.nanoTime() + timeout.toNanos();
        while (cancellations.get() < n) {
            if (System.nanoTime() > end) return false;
            Thread.sleep(5);
        }
        return true;
    }

    /** Stops the server and the client. */
    @Override
    public void close() {
        client.close();
        channel.shutdownNow();
        server.shutdownNow();
        timer.shutdownNow();
    }

    // ---- the default responder and the toy tokenizer ----

    private static FakeReply echo(GenerateRequest r) {
        return switch (r.getInputCase()) {
            case PROMPT -> FakeReply.text(r.getPrompt());
            case CHAT -> {
                String last = "";
                for (ChatMessage m : r.getChat().getMessagesList()) if (m.getRole() == Role.ROLE_USER) last = m.getContent();
                yield FakeReply.text(last);
            }
            default -> FakeReply.text(r.getTokenIds().getIdsCount() + " tokens");
        };
    }

    private List<String> tokenPieces(String text) { return FakeReply.pieces(text); }

    private int tokenId(String piece) { return Math.floorMod(piece.hashCode(), Math.max(1, modelInfo.getVocabSize())); }

    /** The M1 chat template, as the real server renders it (see docs/minimax-m1.md). */
    static String render(ChatInput chat) {
        StringBuilder s = new StringBuilder("<begin_of_document>");
        List<ChatMessage> msgs = chat.getMessagesList();
        int i = 0;
        if (!msgs.isEmpty() && msgs.getFirst().getRole() == Role.ROLE_SYSTEM) {
            s.append("<beginning_of_sentence>system ai_setting=assistant\n").append(msgs.getFirst().getContent()).append("<end_of_sentence>\n");
            i = 1;
        }
        if (chat.getToolsCount() > 0) {
            s.append("<beginning_of_sentence>system tool_setting=tools\nYou are provided with these tools:\n<tools>\n");
            for (Tool t : chat.getToolsList()) {
                s.append("{\"name\": ").append(quote(t.getName())).append(", \"description\": ").append(quote(t.getDescription()))
                        .append(", \"parameters\": ").append(t.getParametersJson().isEmpty() ? "{}" : t.getParametersJson()).append("}\n");
            }
            s.append("</tools>\n\nIf you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and provide "
                    + "tool-name and json-object of arguments, following the format below:\n<tool_calls>\n"
                    + "{'name': <tool-name-1>, 'arguments': <args-json-object-1>}\n...\n</tool_calls><end_of_sentence>\n");
        }
        for (; i < msgs.size(); i++) {
            ChatMessage m = msgs.get(i);
            switch (m.getRole()) {
                case ROLE_SYSTEM -> s.append("<beginning_of_sentence>system ai_setting=assistant\n").append(m.getContent());
                case ROLE_USER -> s.append("<beginning_of_sentence>user name=user\n").append(m.getContent());
                case ROLE_ASSISTANT -> {
                    s.append("<beginning_of_sentence>ai name=assistant\n").append(m.getContent());
                    if (m.getToolCallsCount() > 0) s.append(toolCallBlock(m.getToolCallsList()));
                }
                case ROLE_TOOL -> s.append("<beginning_of_sentence>tool name=tools\ntool name: ").append(m.getName())
                        .append("\ntool result: ").append(m.getContent()).append("\n\n");
                default -> throw new IllegalArgumentException("role");
            }
            s.append("<end_of_sentence>\n");
        }
        return s.append("<beginning_of_sentence>ai name=assistant\n").toString();
    }

    static String toolCallBlock(List<ToolCall> calls) {
        StringBuilder s = new StringBuilder("<tool_calls>\n");
        for (ToolCall c : calls) {
            s.append("{\"name\": ").append(quote(c.getName())).append(", \"arguments\": ").append(c.getArgumentsJson()).append("}\n");
        }
        return s.append("</tool_calls>").toString();
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
                }
            }
        }
        return b.append('"').toString();
    }

    private String inputText(GenerateRequest r) {
        return switch (r.getInputCase()) {
            case PROMPT -> r.getPrompt();
            case CHAT -> render(r.getChat());
            default -> "";
        };
    }

    // ---- validation, as the real server does it ----

    private static Status validate(GenerateRequest r) {
        switch (r.getInputCase()) {
            case PROMPT -> { if (r.getPrompt().isEmpty()) return invalid("prompt: must not be empty"); }
            case TOKEN_IDS -> { if (r.getTokenIds().getIdsCount() == 0) return invalid("token_ids.ids: at least one token"); }
            case CHAT -> {
                Status s = validateChat(r.getChat());
                if (!s.isOk()) return s;
            }
            default -> { return invalid("input: one of prompt, token_ids, chat must be set"); }
        }
        SamplingParams s = r.getSampling();
        if (s.hasTemperature() && !(s.getTemperature() >= 0 && s.getTemperature() <= 100)) return invalid("sampling.temperature must be in [0, 100]");
        if (s.getTopK() < 0) return invalid("sampling.top_k must be >= 0");
        if (s.hasTopP() && !(s.getTopP() > 0 && s.getTopP() <= 1)) return invalid("sampling.top_p must be in (0, 1]");
        if (s.hasMaxNewTokens() && s.getMaxNewTokens() < 1) return invalid("sampling.max_new_tokens must be >= 1");
        if (s.getMaxThinkingTokens() < 0) return invalid("sampling.max_thinking_tokens must be >= 0");
        if (s.getN() < 0 || s.getN() > 16) return invalid("sampling.n must be in 1..16, got " + s.getN());
        if (s.hasLogprobs() && (s.getLogprobs() < 0 || s.getLogprobs() > 20)) return invalid("sampling.logprobs must be in 0..20, got " + s.getLogprobs());
        if (s.hasPromptLogprobs() && (s.getPromptLogprobs() < 0 || s.getPromptLogprobs() > 20)) {
            return invalid("sampling.prompt_logprobs must be in 0..20, got " + s.getPromptLogprobs());
        }
        if (!(s.getPresencePenalty() >= -2 && s.getPresencePenalty() <= 2)) return invalid("sampling.presence_penalty must be in [-2, 2], got " + s.getPresencePenalty());
        if (!(s.getFrequencyPenalty() >= -2 && s.getFrequencyPenalty() <= 2)) return invalid("sampling.frequency_penalty must be in [-2, 2], got " + s.getFrequencyPenalty());
        if (s.hasRepetitionPenalty() && !(s.getRepetitionPenalty() > 0)) return invalid("sampling.repetition_penalty must be > 0, got " + s.getRepetitionPenalty());
        return Status.OK;
    }

    private static Status validateChat(ChatInput c) {
        if (c.getMessagesCount() == 0) return invalid("chat.messages: at least one message");
        for (int i = 0; i < c.getMessagesCount(); i++) {
            if (c.getMessages(i).getRole() == Role.ROLE_UNSPECIFIED) return invalid("chat.messages[" + i + "].role: must be set");
        }
        for (int i = 0; i < c.getToolsCount(); i++) {
            if (c.getTools(i).getName().isEmpty()) return invalid("chat.tools[" + i + "].name: must be set");
        }
        return Status.OK;
    }

    private static Status invalid(String m) { return Status.INVALID_ARGUMENT.withDescription(m); }

    // ---- answering ----

    /**
     * The chunks of a reply to one request: each choice's deltas and its last chunk (sampling.n choices, all the same
     * reply), usage on the very last. Each delta counts as one token: with return_token_ids it carries an id (a hash of
     * its text), with sampling.logprobs a made-up log-probability (-0.1 to -0.5, cycling) and alternatives ("alt1", ...,
     * each 1 lower); the first chunk carries the prompt's ids and made-up log-probabilities (-1) when asked for.
     */
    private List<GenerateChunk> chunks(GenerateRequest r, FakeReply reply, String id) {
        SamplingParams sp = r.getSampling();
        int n = Math.max(1, sp.getN());
        List<GenerateChunk> out = new ArrayList<>();
        Usage.Builder total = null;
        for (int c = 0; c < n; c++) {
            List<GenerateChunk> one = choiceChunks(r, reply, id);
            for (int k = 0; k < one.size(); k++) {
                GenerateChunk.Builder b = one.get(k).toBuilder().setChoiceIndex(c);
                boolean content = k < one.size() - 1;
                String piece = b.getTextDelta() + b.getReasoningDelta() + (b.getToolCallsCount() > 0 ? toolCallBlock(b.getToolCallsList()) : "");
                if (content && r.getReturnTokenIds()) b.addTokenIds(tokenId(piece));
                if (content && sp.hasLogprobs()) b.addLogprobs(fakeLogprob(piece, -0.1 * (k % 5 + 1), sp.getLogprobs()));
                if (!content) {
                    Usage u = b.getUsage();
                    if (total == null) total = u.toBuilder();
                    else total.setCompletionTokens(total.getCompletionTokens() + u.getCompletionTokens())
                            .setReasoningTokens(total.getReasoningTokens() + u.getReasoningTokens())
                            .setTotalTokens(total.getTotalTokens() + u.getCompletionTokens());
                    b.clearUsage();
                    if (c == n - 1) b.setUsage(total);
                }
                out.add(b.build());
            }
        }
        GenerateChunk.Builder first = out.getFirst().toBuilder();
        List<String> promptPieces = r.hasTokenIds() ? List.of() : tokenPieces(inputText(r));
        if (r.getReturnTokenIds()) {
            if (r.hasTokenIds()) first.addAllPromptTokenIds(r.getTokenIds().getIdsList());
            else for (String p : promptPieces) first.addPromptTokenIds(tokenId(p));
        }
        if (sp.hasPromptLogprobs()) {
            int count = r.hasTokenIds() ? r.getTokenIds().getIdsCount() : promptPieces.size();
            for (int i = 1; i < count; i++) {
                String piece = r.hasTokenIds() ? "" : promptPieces.get(i);
                first.addPromptLogprobs(fakeLogprob(piece, -1.0, sp.getPromptLogprobs()).toBuilder()
                        .setTokenId(r.hasTokenIds() ? r.getTokenIds().getIds(i) : tokenId(piece)));
            }
        }
        out.set(0, first.build());
        return out;
    }

    private io.lightmesh.proto.v1.TokenLogprob fakeLogprob(String piece, double logprob, int top) {
        io.lightmesh.proto.v1.TokenLogprob.Builder b = io.lightmesh.proto.v1.TokenLogprob.newBuilder().setTokenId(tokenId(piece))
                .setToken(piece).setBytes(com.google.protobuf.ByteString.copyFromUtf8(piece)).setLogprob((float) logprob);
        for (int j = 0; j < top; j++) {
            String alt = j == 0 ? piece : "alt" + j;
            b.addTopLogprobs(io.lightmesh.proto.v1.TokenLogprob.newBuilder().setTokenId(tokenId(alt)).setToken(alt)
                    .setBytes(com.google.protobuf.ByteString.copyFromUtf8(alt)).setLogprob((float) (logprob - j)));
        }
        return b.build();
    }

    /** One choice's chunks: deltas, then its last chunk (with this choice's usage). */
    private List<GenerateChunk> choiceChunks(GenerateRequest r, FakeReply reply, String id) {
        boolean parse = r.getParseOutput();
        List<GenerateChunk> out = new ArrayList<>();
        List<ToolCall> calls = new ArrayList<>();
        for (int i = 0; i < reply.toolCalls.size(); i++) {
            calls.add(ToolCall.newBuilder().setId("call_" + id + "_" + i).setIndex(i).setName(reply.toolCalls.get(i)[0])
                    .setArgumentsJson(reply.toolCalls.get(i)[1]).build());
        }
        if (!reply.reasoning.isEmpty()) {
            if (parse) {
                for (String d : reply.reasoning) out.add(GenerateChunk.newBuilder().setRequestId(id).setReasoningDelta(d).build());
            } else {
                out.add(GenerateChunk.newBuilder().setRequestId(id).setTextDelta("<think>\n").build());
                for (String d : reply.reasoning) out.add(GenerateChunk.newBuilder().setRequestId(id).setTextDelta(d).build());
                out.add(GenerateChunk.newBuilder().setRequestId(id).setTextDelta("\n</think>\n").build());
            }
        }
        for (String d : reply.text) out.add(GenerateChunk.newBuilder().setRequestId(id).setTextDelta(d).build());
        if (!calls.isEmpty()) {
            out.add(parse ? GenerateChunk.newBuilder().setRequestId(id).addAllToolCalls(calls).build()
                    : GenerateChunk.newBuilder().setRequestId(id).setTextDelta(toolCallBlock(calls)).build());
        }
        FinishReason f = reply.finishReason != null ? reply.finishReason : calls.isEmpty() ? FinishReason.STOP : FinishReason.TOOL_CALLS;
        int prompt = reply.promptTokens >= 0 ? reply.promptTokens
                : r.hasTokenIds() ? r.getTokenIds().getIdsCount() : tokenPieces(inputText(r)).size();
        int completion = reply.completionTokens >= 0 ? reply.completionTokens : out.size();
        int reasoningTokens = Math.min(completion, reply.reasoning.size());
        out.add(GenerateChunk.newBuilder().setRequestId(id).setFinishReason(Protos.toProto(f)).setMatchedStop(reply.matchedStop)
                .setUsage(Usage.newBuilder().setPromptTokens(prompt).setCompletionTokens(completion).setReasoningTokens(reasoningTokens)
                        .setTotalTokens(prompt + completion))
                .build());
        return out;
    }

    private FakeReply next(GenerateRequest r) {
        FakeReply reply = queue.poll();
        return reply != null ? reply : responder.apply(r);
    }

    /** Answers calls failed by {@link #failNextCalls} and checks the API key, before any method runs. */
    private final class Gate implements ServerInterceptor {
        private final Metadata.Key<String> auth = Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

        @Override
        public <Q, A> ServerCall.Listener<Q> interceptCall(ServerCall<Q, A> call, Metadata headers, ServerCallHandler<Q, A> next) {
            String key = apiKey;
            if (key != null && !("Bearer " + key).equals(headers.get(auth))) {
                call.close(Status.UNAUTHENTICATED.withDescription("missing or wrong API key"), new Metadata());
                return new ServerCall.Listener<>() {};
            }
            if (failuresLeft.getAndUpdate(n -> Math.max(0, n - 1)) > 0) {
                String method = call.getMethodDescriptor().getFullMethodName();
                boolean generation = method.endsWith("/Generate") || method.endsWith("/GenerateStream");
                ServerCall.Listener<Q> inner = new ServerCall.Listener<>() {
                    @Override
                    public void onMessage(Q message) {
                        if (generation) requests.add((GenerateRequest) message);
                    }

                    @Override
                    public void onHalfClose() { call.close(failure, new Metadata()); }
                };
                call.request(1);
                return inner;
            }
            return next.startCall(call, headers);
        }
    }

    private final class Service extends InferenceGrpc.InferenceImplBase {
        @Override
        public void generate(GenerateRequest r, StreamObserver<GenerateResponse> out) {
            requests.add(r);
            Status invalid = validate(r);
            if (!invalid.isOk()) {
                out.onError(invalid.asRuntimeException());
                return;
            }
            ServerCallStreamObserver<GenerateResponse> obs = (ServerCallStreamObserver<GenerateResponse>) out;
            obs.setOnCancelHandler(cancellations::incrementAndGet);
            FakeReply reply = next(r);
            if (reply.hang) return;
            String id = r.getRequestId().isEmpty() ? UUID.randomUUID().toString() : r.getRequestId();
            Runnable answer = () -> {
                if (obs.isCancelled()) return;
                if (reply.errorCode != null) {
                    obs.onError(Status.fromCode(reply.errorCode).withDescription(reply.errorMessage).asRuntimeException());
                    return;
                }
                obs.onNext(whole(id, chunks(r, reply, id)));
                obs.onCompleted();
            };
            if (reply.delay.isZero()) answer.run();
            else timer.schedule(answer, reply.delay.toNanos(), TimeUnit.NANOSECONDS);
        }

        /** The chunks of a stream folded into the whole answer, choice by choice. */
        private GenerateResponse whole(String id, List<GenerateChunk> chunks) {
            GenerateResponse.Builder b = GenerateResponse.newBuilder().setRequestId(id);
            java.util.TreeMap<Integer, io.lightmesh.proto.v1.Choice.Builder> choices = new java.util.TreeMap<>();
            for (GenerateChunk c : chunks) {
                io.lightmesh.proto.v1.Choice.Builder ch = choices.computeIfAbsent(c.getChoiceIndex(),
                        i -> io.lightmesh.proto.v1.Choice.newBuilder().setIndex(i));
                ch.setText(ch.getText() + c.getTextDelta()).setReasoning(ch.getReasoning() + c.getReasoningDelta())
                        .addAllToolCalls(c.getToolCallsList()).addAllTokenIds(c.getTokenIdsList()).addAllLogprobs(c.getLogprobsList());
                if (c.getFinishReason() != io.lightmesh.proto.v1.FinishReason.FINISH_REASON_UNSPECIFIED) {
                    ch.setFinishReason(c.getFinishReason()).setMatchedStop(c.getMatchedStop()).setCompletionTokens(ch.getTokenIdsCount());
                }
                if (c.hasUsage()) b.setUsage(c.getUsage());
                b.addAllPromptTokenIds(c.getPromptTokenIdsList()).addAllPromptLogprobs(c.getPromptLogprobsList());
            }
            io.lightmesh.proto.v1.Choice first = choices.firstEntry().getValue().build();
            b.setText(first.getText()).setReasoning(first.getReasoning()).addAllToolCalls(first.getToolCallsList())
                    .addAllTokenIds(first.getTokenIdsList()).addAllLogprobs(first.getLogprobsList())
                    .setFinishReason(first.getFinishReason()).setMatchedStop(first.getMatchedStop());
            if (choices.size() > 1) for (var ch : choices.values()) b.addChoices(ch);
            return b.build();
        }

        @Override
        public void generateStream(GenerateRequest r, StreamObserver<GenerateChunk> out) {
            requests.add(r);
            Status invalid = validate(r);
            if (!invalid.isOk()) {
                out.onError(invalid.asRuntimeException());
                return;
            }
            ServerCallStreamObserver<GenerateChunk> obs = (ServerCallStreamObserver<GenerateChunk>) out;
            obs.setOnCancelHandler(cancellations::incrementAndGet);
            FakeReply reply = next(r);
            if (reply.hang) return;
            String id = r.getRequestId().isEmpty() ? UUID.randomUUID().toString() : r.getRequestId();
            List<GenerateChunk> chunks = reply.errorCode != null && reply.failAfter < 0 ? List.of() : chunks(r, reply, id);
            send(obs, reply, chunks, 0);
        }

        /** Sends the chunks from i on: at once without a delay, else one per delay. */
        private void send(ServerCallStreamObserver<GenerateChunk> obs, FakeReply reply, List<GenerateChunk> chunks, int i) {
            for (int k = i; k <= chunks.size(); k++) {
                synchronized (obs) {
                    if (obs.isCancelled()) return;
                    if (reply.errorCode != null && k == Math.max(0, reply.failAfter)) {
                        obs.onError(Status.fromCode(reply.errorCode).withDescription(reply.errorMessage).asRuntimeException());
                        return;
                    }
                    if (k == chunks.size()) {
                        obs.onCompleted();
                        return;
                    }
                    if (!reply.delay.isZero()) {
                        int at = k;
                        timer.schedule(() -> {
                            synchronized (obs) {
                                if (obs.isCancelled()) return;
                                obs.onNext(chunks.get(at));
                            }
                            send(obs, reply, chunks, at + 1);
                        }, reply.delay.toNanos(), TimeUnit.NANOSECONDS);
                        return;
                    }
                    obs.onNext(chunks.get(k));
                }
            }
        }

        @Override
        public void tokenize(TokenizeRequest r, StreamObserver<TokenizeResponse> out) {
            String text;
            switch (r.getInputCase()) {
                case TEXT -> text = r.getText();
                case CHAT -> {
                    Status s = validateChat(r.getChat());
                    if (!s.isOk()) {
                        out.onError(s.asRuntimeException());
                        return;
                    }
                    text = render(r.getChat());
                }
                default -> {
                    out.onError(invalid("input: one of text, chat must be set").asRuntimeException());
                    return;
                }
            }
            List<String> pieces = tokenPieces(text);
            TokenizeResponse.Builder b = TokenizeResponse.newBuilder().setCount(pieces.size());
            for (String p : pieces) b.addIds(tokenId(p));
            if (r.getReturnPieces()) b.addAllPieces(pieces);
            out.onNext(b.build());
            out.onCompleted();
        }

        @Override
        public void getModelInfo(ModelInfoRequest r, StreamObserver<ModelInfo> out) {
            out.onNext(modelInfo);
            out.onCompleted();
        }

        @Override
        public void health(HealthRequest r, StreamObserver<HealthResponse> out) {
            out.onNext(HealthResponse.newBuilder()
                    .setStatus(serving ? ServingStatus.SERVING_STATUS_SERVING : ServingStatus.SERVING_STATUS_NOT_SERVING)
                    .addComponents(ComponentHealth.newBuilder().setName("fake").setReachable(serving).setDetail("scripted replies"))
                    .build());
            out.onCompleted();
        }
    }
}
