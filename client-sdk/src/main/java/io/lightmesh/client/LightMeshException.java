package io.lightmesh.client;

import io.grpc.Status;

/**
 * A failed call. {@link #code()} is the gRPC status code: {@code INVALID_ARGUMENT} (a bad request; the message names
 * the field), {@code RESOURCE_EXHAUSTED} (the server's admission queue is full), {@code UNAVAILABLE} (no server or
 * worker could take it), {@code DEADLINE_EXCEEDED}, {@code CANCELLED}, {@code UNAUTHENTICATED}, ...
 */
public final class LightMeshException extends RuntimeException {
    private final Status.Code code;
    private final String description;
    private final int attempts;
    private final boolean partial;

    /**
     * @param code     the gRPC status code
     * @param message  what went wrong
     * @param cause    the underlying exception, or null
     * @param attempts how many times the call was tried (1 when it was not retried)
     * @param partial  whether part of a streamed answer had already been delivered
     */
    public LightMeshException(Status.Code code, String message, Throwable cause, int attempts, boolean partial) {
        super(code + (message == null || message.isEmpty() ? "" : ": " + message), cause);
        this.code = code;
        this.description = message == null ? "" : message;
        this.attempts = attempts;
        this.partial = partial;
    }

    /** The gRPC status code. */
    public Status.Code code() { return code; }

    /** What went wrong, as the server (or the client) said it; {@code ""} when nothing was said. */
    public String description() { return description; }

    /** How many times the call was tried before this failure was reported. */
    public int attempts() { return attempts; }

    /** Whether part of a streamed answer had been delivered before the failure (the call was then not retried). */
    public boolean partial() { return partial; }

    /** Whether the same request may succeed later unchanged ({@code UNAVAILABLE}, {@code RESOURCE_EXHAUSTED}). */
    public boolean retryable() { return code == Status.Code.UNAVAILABLE || code == Status.Code.RESOURCE_EXHAUSTED; }
}
