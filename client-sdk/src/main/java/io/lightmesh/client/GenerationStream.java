package io.lightmesh.client;

import io.grpc.Status;
import io.lightmesh.client.internal.Protos;
import io.lightmesh.client.internal.StreamCall;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.Function;

/**
 * A streamed answer, read as an iterator of {@link Delta}s; the last one carries the finish reason. Single use, and
 * not thread-safe except for {@link #cancel()}. Close it (try-with-resources) to cancel the generation on the server
 * when stopping early:
 *
 * <pre>{@code
 * try (GenerationStream stream = client.stream(request)) {
 *     for (Delta d : stream) System.out.print(d.text());
 * }
 * }</pre>
 *
 * A failure is thrown from {@link #hasNext()} / {@link #next()} as a {@link LightMeshException}. Only a few deltas are
 * buffered: a slow reader slows the server down rather than filling memory.
 */
public final class GenerationStream implements Iterator<Delta>, Iterable<Delta>, AutoCloseable {
    private static final int WINDOW = 16;   // deltas asked for ahead of the reader

    private final String requestId;
    private final BlockingQueue<Object> events = new LinkedBlockingQueue<>();   // Delta, or End
    private final StreamCall<GenerateRequest, GenerateChunk> call;
    private Delta next;
    private boolean done;

    private record End(LightMeshException error) {}

    GenerationStream(String requestId,
                     Function<StreamCall.Listener<GenerateChunk>, StreamCall<GenerateRequest, GenerateChunk>> calls) {
        this.requestId = requestId;
        this.call = calls.apply(new StreamCall.Listener<>() {
            @Override public void onMessage(GenerateChunk c) { events.add(Protos.fromProto(c)); }
            @Override public void onClose(LightMeshException error) { events.add(new End(error)); }
        });
        call.request(WINDOW);
        call.start();
    }

    /** The request's id. */
    public String requestId() { return requestId; }

    /**
     * Whether another delta is coming; blocks until it arrives.
     *
     * @throws LightMeshException when the call failed (not after {@link #cancel()})
     */
    @Override
    public boolean hasNext() {
        if (next != null) return true;
        if (done) return false;
        Object e;
        try {
            e = events.take();
        } catch (InterruptedException ie) {
            Thread.currentThread().interrupt();
            cancel();
            done = true;
            throw new LightMeshException(Status.Code.CANCELLED, "interrupted while waiting for the stream", ie, 1, false);
        }
        if (e instanceof Delta d) {
            next = d;
            call.request(1);
            return true;
        }
        done = true;
        LightMeshException error = ((End) e).error();
        if (error != null && !call.isCancelled()) {
            throw new LightMeshException(error.code(), error.description(), error, error.attempts(), error.partial());
        }
        return false;
    }

    /** The next delta; blocks until it arrives. */
    @Override
    public Delta next() {
        if (!hasNext()) throw new NoSuchElementException();
        Delta d = next;
        next = null;
        return d;
    }

    /** This stream itself, for for-each loops (single use). */
    @Override
    public Iterator<Delta> iterator() { return this; }

    /**
     * Reads the rest of the stream and folds it into a {@link Completion}: call it instead of iterating.
     *
     * @throws LightMeshException when the call failed, or was cancelled before finishing
     */
    public Completion toCompletion() {
        List<Delta> deltas = new ArrayList<>();
        while (hasNext()) deltas.add(next());
        if (deltas.isEmpty() || !deltas.getLast().isLast()) {
            throw new LightMeshException(Status.Code.CANCELLED, "the stream ended before finishing", null, 1, !deltas.isEmpty());
        }
        return Completion.of(deltas);
    }

    /** Cancels the generation; the server stops working on it. Iteration then ends. Any thread. */
    public void cancel() { call.cancel("cancelled by the client"); }

    /** Cancels the generation unless it already finished. */
    @Override
    public void close() { if (!done) cancel(); }
}
