package io.lightmesh.router;

import io.grpc.Context;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.proto.v1.DecodeEvent;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.lightmesh.proto.v1.DecodeRequest;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.PrefillTask;
import io.lightmesh.proto.v1.TokenLogprob;
import io.lightmesh.proto.v1.Usage;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Scope;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.logging.Logger;

/**
 * One request through the mesh: picks a decode worker, follows its token stream (Decode.Generate), queues the
 * request on Kafka for prefill, folds each decode event into the answer of its choice and relays it to the
 * {@link AnswerSink}, and resumes on another decode worker when one is lost (the prompt plus the tokens delivered so
 * far are prefilled again; events of an earlier attempt are dropped). Client cancellation and deadlines propagate
 * through the gRPC context to the decode worker, which frees the sequence.
 */
final class RequestRun {
    private static final Logger LOG = Logger.getLogger(RequestRun.class.getName());
    static final AttributeKey<String> REQUEST_ID = AttributeKey.stringKey("lightmesh.request_id");

    /**
     * What every request runs through: the decode workers known (and channels to them), the request topic, the
     * router's figures, the tokenizer's log-probability text, the model's shape, the tracer, and how many times a
     * request may be resumed on another decode worker.
     */
    record Mesh(WorkerDirectory workers, RequestQueue queue, RouterMetrics metrics, LogprobText logprobText, ModelConfig config,
                Tracer tracer, int maxResumes) {}

    private final Mesh mesh;
    final GenerationSpec spec;
    final String conversation;
    final AnswerSink sink;
    final Context ctx;
    final int choices;                             // sampling.n
    final Answer[] answers;                        // per choice
    final List<List<Integer>> delivered = new ArrayList<>(); // per choice: tokens relayed to the client
    final boolean[] ended;                         // per choice: its last event came
    int open, completionTokens, reasoningTokens;   // choices not ended; counts of the ended ones
    boolean anyEvent, promptLogprobsSent;
    final Set<String> failedTargets = new HashSet<>();
    /** Why the last attempt was lost (for the final error when no decode worker is left); null before any loss. */
    volatile Status lastLoss;
    final Span span;                              // "lightmesh.generate": the request's root in the mesh
    final io.opentelemetry.context.Context trace; // the span's context, parent of all the request causes
    final long admittedNanos = System.nanoTime();
    long firstTokenNanos;
    int attempt;
    long stateBytes;
    boolean waiting;                              // counted in queued

    RequestRun(Mesh mesh, GenerationSpec spec, String conversation, Answer[] answers, AnswerSink sink) {
        this.mesh = mesh;
        this.spec = spec;
        this.conversation = conversation;
        this.answers = answers;
        this.choices = answers.length;
        this.ended = new boolean[choices];
        this.open = choices;
        for (int c = 0; c < choices; c++) delivered.add(new ArrayList<>());
        this.sink = sink;
        this.ctx = Context.current();
        this.span = mesh.tracer().spanBuilder("lightmesh.generate").setSpanKind(SpanKind.SERVER)
                .setParent(io.opentelemetry.context.Context.current())
                .setAttribute(REQUEST_ID, spec.getRequestId())
                .setAttribute("lightmesh.prompt_tokens", spec.getPromptTokensCount()).startSpan();
        this.trace = io.opentelemetry.context.Context.current().with(span);
    }

    void start() { ctx.run(this::launch); }

    private void launch() {
        try (Scope ignored = trace.makeCurrent()) {
            launchAttempt();
        }
    }

    private void launchAttempt() {
        String target = mesh.workers().pickDecode(failedTargets);
        if (target == null) {
            done();
            sink.fail(Status.UNAVAILABLE.withDescription("no decode worker reachable" + (lastLoss == null ? "" : "; the last attempt failed: " + lastLoss)));
            return;
        }
        synchronized (this) {
            if (!waiting) { waiting = true; mesh.metrics().queued.incrementAndGet(); }
        }
        GenerationSpec attemptSpec;
        synchronized (this) { attemptSpec = spec.toBuilder().addAllGeneratedTokens(delivered.getFirst()).build(); }
        int context = attemptSpec.getPromptTokensCount() + attemptSpec.getGeneratedTokensCount();
        int myAttempt = attempt;
        DecodeGrpc.newStub(mesh.workers().channel(target)).generate(DecodeRequest.newBuilder().setRequestId(spec.getRequestId()).build(), new StreamObserver<>() {
            @Override public void onNext(DecodeEvent e) { onEvent(myAttempt, e); }
            @Override public void onError(Throwable t) { onDecodeError(target, myAttempt, Status.fromThrowable(t)); }
            @Override public void onCompleted() {}
        });
        PrefillTask task = PrefillTask.newBuilder().setSpec(attemptSpec).setConversationId(conversation).setDecodeTarget(target)
                .setAttempt(attempt).setExpectedStateBytes(StateCodec.serialisedBytes(mesh.config(), context) * choices).build(); // a copy per choice
        mesh.queue().publish(task, conversation, trace,
                err -> { done(); sink.fail(Status.UNAVAILABLE.withDescription("cannot queue request on Kafka: " + err)); });
    }

    /**
     * One decode event: its token (at most one; none for the step that met eos) and the text it released. Events
     * of an earlier attempt, and tokens already delivered, are dropped: text belongs to its token, so a resumed
     * worker (which replays the delivered tokens) continues the text exactly where the lost one stopped.
     */
    private void onEvent(int fromAttempt, DecodeEvent e) {
        int c = e.getChoiceIndex();
        List<Integer> fresh = new ArrayList<>();
        List<TokenLogprob> freshLogprobs = new ArrayList<>(), promptLogprobs = List.of();
        Answer.Delta delta;
        boolean choiceEnded, last = false;
        FinishReason reason = null;
        int choiceTokens = 0;
        synchronized (this) {
            if (fromAttempt != attempt || finished || c < 0 || c >= choices || ended[c]) return;
            List<Integer> mine = delivered.get(c);
            if (e.getFirstIndex() + e.getTokenIdsCount() <= mine.size() && e.getTokenIdsCount() > 0) return;
            anyEvent = true;
            for (int i = 0; i < e.getTokenIdsCount(); i++) {
                if (e.getFirstIndex() + i == mine.size()) {
                    mine.add(e.getTokenIds(i));
                    fresh.add(e.getTokenIds(i));
                    if (i < e.getLogprobsCount()) freshLogprobs.add(mesh.logprobText().describe(e.getLogprobs(i)));
                }
            }
            if (!promptLogprobsSent && e.getPromptLogprobsCount() > 0) {
                promptLogprobsSent = true;
                promptLogprobs = e.getPromptLogprobsList().stream().map(mesh.logprobText()::describe).toList();
            }
            choiceEnded = e.getFinishReason() != FinishReason.FINISH_REASON_UNSPECIFIED;
            delta = answers[c].accept(e.getTextDelta(), choiceEnded);
            if (choiceEnded) {
                ended[c] = true;
                reason = answers[c].finishReason(e.getFinishReason());
                choiceTokens = mine.size();
                completionTokens += choiceTokens;
                reasoningTokens += e.getReasoningTokens();
                last = --open == 0;
                if (last) stateBytes += e.getStats().getStateBytes();
            }
            if (waiting) { waiting = false; mesh.metrics().queued.decrementAndGet(); }
            if (!fresh.isEmpty() && firstTokenNanos == 0) {
                firstTokenNanos = System.nanoTime();
                mesh.metrics().firstToken((firstTokenNanos - admittedNanos) / 1e9);
                span.addEvent("first token");
            }
        }
        if (!fresh.isEmpty() || !delta.isEmpty() || !promptLogprobs.isEmpty()) sink.delta(c, fresh, delta, freshLogprobs, promptLogprobs);
        if (!choiceEnded) return;
        if (!last) {
            sink.finish(c, reason, e.getMatchedStop(), choiceTokens, e.getReasoningTokens(), null, null);
            return;
        }
        int completion = completionTokens;
        if (completion > choices) mesh.metrics().timePerOutputToken((System.nanoTime() - firstTokenNanos) / 1e9 / ((completion - 1.0) / choices));
        span.setAttribute("lightmesh.completion_tokens", completion).setAttribute("lightmesh.finish_reason", e.getFinishReason().name())
                .setAttribute("lightmesh.resumes", attempt);
        done();
        sink.finish(c, reason, e.getMatchedStop(), choiceTokens, e.getReasoningTokens(),
                Usage.newBuilder().setPromptTokens(spec.getPromptTokensCount()).setCompletionTokens(completion)
                        .setReasoningTokens(reasoningTokens).setTotalTokens(spec.getPromptTokensCount() + completion)
                        .setCachedTokens(Math.min(spec.getPromptTokensCount(), e.getStats().getCachedTokens())).build(),
                e.getStats().toBuilder().setResumes(attempt).setStateBytes(stateBytes).build());
    }

    private void onDecodeError(String target, int failedAttempt, Status s) {
        if (ctx.isCancelled()) { // the client went away or its deadline passed
            span.setAttribute("lightmesh.finish_reason", "client cancelled or deadline passed");
            done();
            return;
        }
        // the client still wants the answer: anything but its own deadline means the worker (or its link) was lost;
        // a killed server resets its streams, which reads as CANCELLED here
        boolean lost = switch (s.getCode()) {
            case UNAVAILABLE, INTERNAL, NOT_FOUND, CANCELLED, UNKNOWN, ABORTED -> true;
            default -> false;
        };
        synchronized (this) {
            if (failedAttempt != attempt || finished) return;
            if (lost) lastLoss = s;
            // several choices resume only before any event: their tokens differ, one re-prefill cannot hold them
            if (lost && attempt < mesh.maxResumes() && (choices == 1 || !anyEvent)) {
                attempt++;
                failedTargets.add(target);
                LOG.info("decode worker " + target + " lost request " + spec.getRequestId() + " (" + s + "); resuming after "
                        + delivered.getFirst().size() + " tokens, attempt " + attempt);
                span.addEvent("decode worker lost; resuming on another");
            } else {
                lost = false;
            }
        }
        if (lost) { ctx.run(this::launch); return; }
        span.setStatus(StatusCode.ERROR, s.toString());
        done();
        sink.fail(s.getCode() == Status.Code.UNAVAILABLE
                ? Status.UNAVAILABLE.withDescription((choices > 1 && anyEvent ? "decode worker lost after the first tokens of a request with "
                        + choices + " choices (not resumed): " : "decode worker lost and no resume left: ") + s.getDescription()) : s);
    }

    private boolean finished;

    private synchronized void done() {
        if (finished) return;
        finished = true;
        mesh.metrics().inFlight.decrementAndGet();
        if (waiting) { waiting = false; mesh.metrics().queued.decrementAndGet(); }
        span.end();
    }
}
