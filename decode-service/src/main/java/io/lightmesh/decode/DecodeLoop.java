package io.lightmesh.decode;

import io.grpc.Status;
import io.lightmesh.engine.generate.ContinuousBatcher;
import io.lightmesh.engine.generate.Generation;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.mesh.Specs;
import io.lightmesh.proto.v1.DecodeEvent;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanBuilder;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * The decode loop: one batched step of the engine's {@link ContinuousBatcher} at a time, on a thread of its own.
 * Sequences whose state arrived {@link #join} between steps; each step's tokens become events on the requests'
 * streams ({@link #emit}), sent by a second thread a step's worth at a time so that the next forward pass overlaps
 * their serialisation and writes. A sequence leaves when it finishes, is cancelled or its step fails, and its slot is
 * then released from the {@link SlotTable}.
 */
final class DecodeLoop implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(DecodeLoop.class.getName());

    private final String workerId;
    private final SlotTable slots;
    private final DecodeMetrics metrics;
    private final Tracer tracer;
    private final ContinuousBatcher batcher;
    private final LinkedBlockingQueue<Slot> joins = new LinkedBlockingQueue<>();
    private final Thread loop;
    private volatile boolean running = true;
    private volatile int activeCount;
    /** Events of the current step, sent when it ends (decode loop only), and the thread that sends them, in order. */
    private final List<Runnable> stepEvents = new ArrayList<>();
    private final ExecutorService events;
    /** Sequences in the batcher, in the order they joined (the decode loop's own view, for step spans). */
    private final List<Slot> decoding = new ArrayList<>();

    /** @param maxBatch most sequences per step; the loop starts with {@link #start} */
    DecodeLoop(String workerId, MiniMaxModel model, int maxBatch, SlotTable slots, DecodeMetrics metrics, Tracer tracer) {
        this.workerId = workerId;
        this.slots = slots;
        this.metrics = metrics;
        this.tracer = tracer;
        this.events = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "decode-events-" + workerId);
            t.setDaemon(true);
            return t;
        });
        this.batcher = new ContinuousBatcher(model, maxBatch, this::onStep);
        this.loop = new Thread(this::runLoop, "decode-loop-" + workerId);
        loop.setDaemon(true);
    }

    void start() { loop.start(); }

    /** A sequence whose state arrived (and whose first tokens were emitted) joins the batch before the next step. */
    void join(Slot s) { joins.add(s); }

    /** Sequences in the batch after the last step. */
    int active() { return activeCount; }

    /** Sequences waiting to join the batch. */
    int joining() { return joins.size(); }

    /**
     * Ends a request wherever it is (reserved, waiting for its state, or decoding), its follower ending with {@code why};
     * false when nothing of it is held here.
     */
    boolean cancel(String id, Status why) {
        Slot s = slots.cancel(id);
        if (s == null) return false;
        s.cancelled = true;
        s.fail(why);
        if (s.state == null) slots.forget(s); // not decoding: nothing else will release it
        else batcher.cancel(id);              // the batcher ends it at its next step; onStep releases the state
        return true;
    }

    private void runLoop() {
        while (running) {
            try {
                Slot s = batcher.idle() ? joins.poll(100, TimeUnit.MILLISECONDS) : joins.poll();
                for (; s != null; s = joins.poll()) {
                    if (s.cancelled) slots.release(s);
                    else {
                        for (Generation g : s.choices) if (!g.finished()) batcher.add(g); // a choice may end at its first token
                        decoding.add(s);
                    }
                }
                decoding.removeIf(x -> x.generation == null);
                if (batcher.idle()) { activeCount = 0; continue; }
                long t0 = System.nanoTime();
                int b;
                Span step = stepSpan();
                try (Scope ignored = step.makeCurrent()) {
                    b = batcher.step();
                } catch (RuntimeException e) {
                    step.setStatus(StatusCode.ERROR, e.toString());
                    failAll(e);
                    continue;
                } finally {
                    step.end();
                    flushEvents();
                }
                activeCount = batcher.running();
                if (b == 0) continue;
                metrics.step(b, batcher.lastLogitRows(), System.nanoTime() - t0);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            } catch (Throwable t) {
                LOG.severe("decode loop: " + t);
            }
        }
    }

    /** Hands the events of the step just run to the events thread (one hand-off per step). */
    private void flushEvents() {
        if (stepEvents.isEmpty()) return;
        List<Runnable> batch = new ArrayList<>(stepEvents);
        stepEvents.clear();
        events.execute(() -> { for (Runnable r : batch) r.run(); });
    }

    /**
     * The span of one batched step: a child of the first sequence's decode span (so a lone request's trace holds its
     * steps and their expert calls), linked to the other sequences' spans.
     */
    private Span stepSpan() {
        SpanBuilder b = tracer.spanBuilder("lightmesh.decode step");
        boolean parented = false;
        int links = 0;
        for (Slot x : decoding) {
            Span sp = x.span;
            if (sp == null) continue;
            if (!parented) { b.setParent(Context.root().with(sp)); parented = true; }
            else if (links++ < 32) b.addLink(sp.getSpanContext());
        }
        if (!parented) b.setNoParent();
        return b.setAttribute("lightmesh.batch_size", decoding.size()).startSpan();
    }

    /** A decode step failed: every sequence in the batch is failed and freed (the batcher drops them next step). */
    private void failAll(RuntimeException e) {
        LOG.warning("decode step failed: " + e);
        for (Slot s : slots.all()) {
            if (s.generation == null) continue;
            // expert shards unreachable (RemoteExperts: UNAVAILABLE) stays UNAVAILABLE: the router resumes or answers 503
            s.fail(e instanceof io.grpc.StatusRuntimeException sre && sre.getStatus().getCode() == Status.Code.UNAVAILABLE
                    ? Status.UNAVAILABLE.withDescription("decode step failed: " + sre.getStatus().getDescription())
                    : Status.INTERNAL.withDescription("decode step failed: " + e.getMessage()));
            s.cancelled = true;
            batcher.cancel(s.id);
            slots.release(s);
        }
    }

    /** The batcher's report of one step of one sequence: becomes one event on the request's stream. */
    private void onStep(Generation g, Generation.Step step) {
        Slot s = slots.get(g.id());
        if (s == null || s.generation == null || !s.choices.contains(g)) return; // already failed or released
        if (step.finished() && step.reason() == io.lightmesh.engine.generate.FinishReason.CANCELLED) {
            slots.release(s);
            return;
        }
        if (emit(s, g, step)) slots.release(s);
    }

    /**
     * Emits what one step produced: the token when it became output (eos, which ends the turn, is not), the text
     * it released, and on the last step the finish reason and counts. True when the sequence finished (the caller
     * releases it). On the loop's thread the event is sent after the step; elsewhere (a hand-off's first token) now.
     */
    boolean emit(Slot s, Generation g, Generation.Step step) {
        int c = s.choices.indexOf(g);
        DecodeEvent.Builder e = DecodeEvent.newBuilder().setRequestId(s.id).setChoiceIndex(c).setFirstIndex(s.delivered[c]).setTextDelta(step.text());
        if (g.tokenCount() > s.delivered[c]) {
            e.addTokenIds(step.token());
            if (step.logprob() != null) e.addLogprobs(Specs.logprob(step.logprob()));
            s.delivered[c] = g.tokenCount();
        }
        if (!s.promptLogprobs.isEmpty()) { // the stream's first event
            e.addAllPromptLogprobs(s.promptLogprobs);
            s.promptLogprobs = List.of();
        }
        if (step.finished()) {
            if (s.span != null) s.span.setAttribute("lightmesh.completion_tokens", g.tokenCount()).setAttribute("lightmesh.finish_reason", step.reason().name());
            e.setFinishReason(Specs.finishReason(step.reason())).setMatchedStop(g.matchedStop())
                    .setCompletionTokens(g.tokenCount()).setReasoningTokens(g.thinkingTokens())
                    .setStats(s.stats.setDecodeWorker(workerId));
        }
        DecodeEvent event = e.build();
        boolean last = step.finished() && --s.open == 0; // the stream ends with its last choice
        if (Thread.currentThread() == loop) stepEvents.add(() -> s.emit(event, last)); // sent after the step, off the loop
        else s.emit(event, last);
        return last;
    }

    /** Stops the loop after its current step; the events already handed off are still sent. */
    @Override
    public void close() {
        running = false;
        loop.interrupt();
        events.shutdown();
    }
}
