package io.lightmesh.client;

import io.grpc.Status;

import java.time.Duration;
import java.util.EnumSet;
import java.util.Set;

/**
 * When and how often a failed call is tried again: exponential backoff with full jitter, within the call's deadline.
 *
 * <p>A streamed generation is retried only while nothing of it has been delivered: once a delta has reached the
 * caller, a failure is reported ({@link LightMeshException#partial()}) rather than restarting the answer. (Losing a
 * decode worker mid-stream is resumed inside the mesh by the router; the client never sees it.) Every attempt of a
 * generation carries the same request id, so that the server can recognise a retry.
 *
 * @param maxAttempts    attempts in all, the first included (1: no retry)
 * @param initialBackoff the wait before the first retry (before jitter)
 * @param maxBackoff     the longest wait between two attempts
 * @param multiplier     growth of the wait from one retry to the next
 * @param retryOn        status codes that are retried
 */
public record RetryPolicy(int maxAttempts, Duration initialBackoff, Duration maxBackoff, double multiplier,
                          Set<Status.Code> retryOn) {
    /** Checks the values. */
    public RetryPolicy {
        if (maxAttempts < 1) throw new IllegalArgumentException("maxAttempts must be >= 1");
        if (initialBackoff.isNegative() || maxBackoff.compareTo(initialBackoff) < 0) {
            throw new IllegalArgumentException("need 0 <= initialBackoff <= maxBackoff");
        }
        if (!(multiplier >= 1)) throw new IllegalArgumentException("multiplier must be >= 1");
        retryOn = retryOn.isEmpty() ? Set.of() : Set.copyOf(EnumSet.copyOf(retryOn));
    }

    /** 4 attempts, 100 ms doubling up to 2 s, on {@code UNAVAILABLE} and {@code RESOURCE_EXHAUSTED}: the default. */
    public static RetryPolicy defaults() {
        return new RetryPolicy(4, Duration.ofMillis(100), Duration.ofSeconds(2), 2.0,
                Set.of(Status.Code.UNAVAILABLE, Status.Code.RESOURCE_EXHAUSTED));
    }

    /** Never retry. */
    public static RetryPolicy none() {
        return new RetryPolicy(1, Duration.ZERO, Duration.ZERO, 1.0, Set.of());
    }

    /** This policy with another number of attempts. */
    public RetryPolicy withMaxAttempts(int attempts) {
        return new RetryPolicy(attempts, initialBackoff, maxBackoff, multiplier, retryOn);
    }

    /** This policy with other backoff bounds. */
    public RetryPolicy withBackoff(Duration initial, Duration max) {
        return new RetryPolicy(maxAttempts, initial, max, multiplier, retryOn);
    }

    /** Whether a failure with this code, after this many attempts, is tried again. */
    public boolean shouldRetry(Status.Code code, int attemptsSoFar) {
        return attemptsSoFar < maxAttempts && retryOn.contains(code);
    }

    /** The upper bound of the wait before retry number {@code retry} (1 for the first retry); jitter picks below it. */
    public Duration backoff(int retry) {
        double nanos = initialBackoff.toNanos() * Math.pow(multiplier, Math.max(0, retry - 1));
        return Duration.ofNanos((long) Math.min(nanos, maxBackoff.toNanos()));
    }
}
