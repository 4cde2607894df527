package io.lightmesh.mesh;

import io.grpc.Context;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;

import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Runs a service's handlers on an executor instead of the server's transport thread, each call's callbacks one at a
 * time and in order, with the call's gRPC {@link Context} (deadline, cancellation) attached: what a plain grpc-java
 * server does with its default executor. Quarkus's gRPC server calls handlers on a Vert.x event loop, which must
 * not wait; the router and decode services tokenize, assemble states and take locks, so they are offloaded.
 */
public final class OffloadingInterceptor implements ServerInterceptor {
    private final Executor executor;

    public OffloadingInterceptor(Executor executor) { this.executor = executor; }

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
        Serial serial = new Serial(executor, Context.current(), call);
        Deferred<Q> listener = new Deferred<>();
        serial.run(() -> listener.delegate = next.startCall(call, headers));
        return new ServerCall.Listener<>() {
            @Override public void onMessage(Q message) { serial.run(() -> listener.delegate.onMessage(message)); }
            @Override public void onHalfClose() { serial.run(() -> listener.delegate.onHalfClose()); }
            @Override public void onCancel() { serial.run(() -> listener.delegate.onCancel()); }
            @Override public void onComplete() { serial.run(() -> listener.delegate.onComplete()); }
            @Override public void onReady() { serial.run(() -> listener.delegate.onReady()); }
        };
    }

    /** The handler's listener, set by the first task of the call (every later task runs after it). */
    private static final class Deferred<Q> {
        ServerCall.Listener<Q> delegate;
    }

    /** One call's tasks: queued in arrival order, drained by at most one executor task at a time. */
    private static final class Serial implements Runnable {
        private final Executor executor;
        private final Context context;
        private final ServerCall<?, ?> call;
        private final Queue<Runnable> tasks = new ConcurrentLinkedQueue<>();
        private final AtomicBoolean scheduled = new AtomicBoolean();
        private boolean failed; // read and written by the draining task only

        Serial(Executor executor, Context context, ServerCall<?, ?> call) {
            this.executor = executor;
            this.context = context;
            this.call = call;
        }

        void run(Runnable task) {
            tasks.add(task);
            if (scheduled.compareAndSet(false, true)) executor.execute(this);
        }

        @Override
        public void run() {
            Context previous = context.attach();
            try {
                Runnable t;
                while ((t = tasks.poll()) != null) {
                    if (failed) continue;
                    try {
                        t.run();
                    } catch (RuntimeException | Error e) {
                        // as grpc-java's own server does: a handler that throws ends its call with UNKNOWN
                        failed = true;
                        try { call.close(Status.UNKNOWN.withDescription("handler failed: " + e).withCause(e), new Metadata()); }
                        catch (RuntimeException closed) { /* already closed */ }
                    }
                }
            } finally {
                context.detach(previous);
                scheduled.set(false);
            }
            // a task queued after the loop ended but before the flag was cleared must not be stranded
            if (!tasks.isEmpty() && scheduled.compareAndSet(false, true)) executor.execute(this);
        }
    }
}
