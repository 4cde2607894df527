package io.lightmesh.client.internal;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.Deadline;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.lightmesh.client.LightMeshException;
import io.lightmesh.client.RetryPolicy;

import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * One logical call (unary or server-streaming) over as many attempts as the retry policy allows, with flow control
 * driven by the consumer's demand. An attempt is retried only while no response message has reached the listener:
 * once part of an answer was delivered, restarting it would repeat or change what the caller already has.
 *
 * <p>Listener callbacks are serial: grpc serialises them within an attempt, and attempts follow each other.
 */
public final class StreamCall<Req, Resp> {
    /** Receives the responses and the end of the call. */
    public interface Listener<Resp> {
        /** One response message. */
        void onMessage(Resp message);

        /** The end: {@code null} when the call completed normally. Called exactly once. */
        void onClose(LightMeshException error);
    }

    private final Channel channel;
    private final MethodDescriptor<Req, Resp> method;
    private final CallOptions options;
    private final Req request;
    private final RetryPolicy policy;
    private final ScheduledExecutorService scheduler;
    private final Listener<Resp> listener;
    private final Object lock = new Object();

    // All guarded by lock.
    private ClientCall<Req, Resp> call;        // the started attempt, null between attempts
    private long demand;                        // requested by the consumer and not yet delivered
    private boolean delivered;                  // a message reached the listener
    private boolean cancelled;
    private boolean closed;
    private int attempts;
    private ScheduledFuture<?> pendingRetry;

    /** A call not started yet: {@link #request} demand, then {@link #start}. */
    public StreamCall(Channel channel, MethodDescriptor<Req, Resp> method, CallOptions options, Req request,
                      RetryPolicy policy, ScheduledExecutorService scheduler, Listener<Resp> listener) {
        this.channel = channel;
        this.method = method;
        this.options = options;
        this.request = request;
        this.policy = policy;
        this.scheduler = scheduler;
        this.listener = listener;
    }

    /** Starts the first attempt. */
    public void start() { attempt(); }

    /** Asks for n more messages (any thread). */
    public void request(long n) {
        ClientCall<Req, Resp> c;
        synchronized (lock) {
            demand = demand + n < 0 ? Long.MAX_VALUE : demand + n;
            c = call;
        }
        if (c != null) c.request((int) Math.min(n, Integer.MAX_VALUE));
    }

    /** Cancels the call; the server sees the cancellation. The listener then gets CANCELLED (any thread). */
    public void cancel(String why) {
        ClientCall<Req, Resp> c;
        synchronized (lock) {
            if (cancelled || closed) return;
            cancelled = true;
            c = call;
            if (pendingRetry != null) pendingRetry.cancel(false);
        }
        if (c != null) c.cancel(why, null);
        else close(new LightMeshException(Status.Code.CANCELLED, why, null, attempts, delivered));
    }

    /** Whether the caller cancelled it. */
    public boolean isCancelled() {
        synchronized (lock) { return cancelled; }
    }

    private void attempt() {
        ClientCall<Req, Resp> c;
        synchronized (lock) {
            pendingRetry = null;
            if (cancelled || closed) return;
            attempts++;
            c = channel.newCall(method, options);
        }
        c.start(new ClientCall.Listener<>() {
            @Override
            public void onMessage(Resp message) {
                synchronized (lock) {
                    delivered = true;
                    if (demand != Long.MAX_VALUE) demand--;
                }
                listener.onMessage(message);
            }

            @Override
            public void onClose(Status status, Metadata trailers) { closed(c, status); }
        }, new Metadata());
        c.sendMessage(request);
        c.halfClose();
        long d;
        synchronized (lock) {
            if (cancelled) {
                c.cancel("cancelled by the client", null);
                return;
            }
            call = c;
            d = demand;
        }
        if (d > 0) c.request((int) Math.min(d, Integer.MAX_VALUE));
    }

    private void closed(ClientCall<Req, Resp> c, Status status) {
        if (status.isOk()) {
            close(null);
            return;
        }
        LightMeshException error;
        synchronized (lock) {
            if (call == c) call = null;
            Deadline deadline = options.getDeadline();
            if (!cancelled && !delivered && policy.shouldRetry(status.getCode(), attempts)) {
                long bound = policy.backoff(attempts).toNanos();
                long wait = bound == 0 ? 0 : ThreadLocalRandom.current().nextLong(bound + 1); // full jitter
                if (deadline == null || deadline.timeRemaining(TimeUnit.NANOSECONDS) > wait) {
                    try {
                        pendingRetry = scheduler.schedule(this::attempt, wait, TimeUnit.NANOSECONDS);
                        return;
                    } catch (RejectedExecutionException closedClient) {
                        // the client was closed: report this attempt's failure
                    }
                }
            }
            String description = status.getDescription();
            if (cancelled && status.getCode() == Status.Code.CANCELLED) description = "cancelled by the client";
            error = new LightMeshException(status.getCode(), description, status.getCause(), attempts, delivered);
        }
        close(error);
    }

    private void close(LightMeshException error) {
        synchronized (lock) {
            if (closed) return;
            closed = true;
        }
        listener.onClose(error);
    }
}
