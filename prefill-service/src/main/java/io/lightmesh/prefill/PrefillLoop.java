package io.lightmesh.prefill;

import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.Specs;
import io.lightmesh.proto.v1.GenerationSpec;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Scope;
import org.apache.kafka.common.errors.WakeupException;

import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.logging.Logger;

/**
 * The prefill loop, on a thread of its own: takes a batch from the request topic, drops what needs no work and
 * reserves room on each record's decode worker, prefills the batch in one pass, ships each state, and settles the
 * batch's offsets (a record to retry is taken again after a pause). Each record is worked on in the trace its headers
 * carry ("lightmesh.prefill").
 */
final class PrefillLoop {
    private static final Logger LOG = Logger.getLogger(PrefillLoop.class.getName());

    private final String workerId;
    private final long retryBackoffMs;
    private final RequestTopic topic;
    private final PrefillPass pass;
    private final StateShipper shipper;
    private final Tracer tracer;
    private final Thread thread;
    private volatile boolean running = true;
    private volatile PrefillWorker.Hook hook = t -> {};
    private volatile boolean busy;

    PrefillLoop(String workerId, long retryBackoffMs, RequestTopic topic, PrefillPass pass, StateShipper shipper, Tracer tracer) {
        this.workerId = workerId;
        this.retryBackoffMs = retryBackoffMs;
        this.topic = topic;
        this.pass = pass;
        this.shipper = shipper;
        this.tracer = tracer;
        this.thread = new Thread(this::run, "prefill-" + workerId);
        thread.setDaemon(true);
    }

    void start() { thread.start(); }

    void setHook(PrefillWorker.Hook hook) { this.hook = hook; }

    /** Whether a batch is being worked on now. */
    boolean busy() { return busy; }

    private void run() {
        try {
            while (running) {
                List<PrefillJob> batch = topic.poll(Duration.ofMillis(100));
                if (batch.isEmpty()) continue;
                busy = true;
                try {
                    handle(batch);
                } finally {
                    busy = false;
                }
                if (!running) return;
                if (topic.settle(batch)) sleep(retryBackoffMs);
            }
        } catch (WakeupException e) {
            // closing
        } catch (PrefillWorker.Crash c) {
            LOG.warning("prefill worker " + workerId + " crashed (simulated): " + c.getMessage());
        } catch (RuntimeException e) {
            LOG.severe("prefill worker " + workerId + " stopped: " + e);
        } finally {
            // no commit on the way out: uncommitted work goes to another member
            topic.close();
        }
    }

    /** Works on a batch, each record in the trace its headers carry; sets each job's commit. */
    private void handle(List<PrefillJob> batch) {
        for (PrefillJob j : batch) {
            j.span = tracer.spanBuilder("lightmesh.prefill").setSpanKind(SpanKind.CONSUMER).setParent(MeshTelemetry.extract(j.record.headers()))
                    .setAttribute("messaging.system", "kafka").setAttribute("messaging.destination.name", j.record.topic())
                    .setAttribute("messaging.kafka.offset", j.record.offset()).setAttribute("lightmesh.worker", workerId)
                    .setAttribute("lightmesh.batch_size", batch.size()).startSpan();
        }
        try {
            Set<String> keys = new HashSet<>();
            for (PrefillJob j : batch) {
                try (Scope ignored = j.span.makeCurrent()) {
                    prepare(j, keys);
                }
            }
            pass.prefill(batch.stream().filter(PrefillJob::open).toList());
            for (PrefillJob j : batch) {
                if (!j.open()) continue;
                try (Scope ignored = j.span.makeCurrent()) {
                    j.commit = shipper.ship(j);
                } finally {
                    if (j.state != null) j.state.discardDevice(); // device memory back now, not at the next GC
                    j.state = null; // shipped or not, this copy is no longer needed
                }
            }
        } catch (RuntimeException e) {
            for (PrefillJob j : batch) j.span.setStatus(StatusCode.ERROR, e.toString());
            throw e;
        } finally {
            for (PrefillJob j : batch) {
                j.span.setAttribute("lightmesh.committed", Boolean.TRUE.equals(j.commit));
                j.span.end();
            }
        }
    }

    /** Before the forward pass: drops what needs no work, and asks the decode worker to reserve room. */
    private void prepare(PrefillJob j, Set<String> keys) {
        if (j.task == null) { j.commit = true; return; }
        hook.taken(j.task);
        GenerationSpec spec = j.task.getSpec();
        String id = spec.getRequestId();
        j.span.setAttribute("lightmesh.request_id", id).setAttribute("lightmesh.attempt", j.task.getAttempt());
        j.key = id + "#" + j.task.getAttempt();
        if (shipper.done(j.key) || !keys.add(j.key)) { // shipped before, or twice in this batch
            LOG.fine("dropping duplicate of " + j.key);
            j.commit = true;
            return;
        }
        if (spec.getDeadlineUnixMs() > 0 && spec.getDeadlineUnixMs() < System.currentTimeMillis()) { j.commit = true; return; }
        j.context = Specs.context(spec);
        shipper.reserve(j);
        j.queueUs = Math.max(0, System.currentTimeMillis() * 1000 - spec.getAdmittedUnixUs());
    }

    private static void sleep(long ms) {
        try { Thread.sleep(ms); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
    }

    /** Stops abruptly, as a kill would: no commit, leaves the group (waits up to 5 s for the loop to end). */
    void close() {
        running = false;
        topic.wakeup();
        try { thread.join(5000); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
    }
}
