package io.lightmesh.engine.model;

import java.util.concurrent.atomic.LongAdder;

/**
 * How long the device path's forward pass stood waiting for remote experts (the micro-batch's finishMoe awaiting its
 * call), summed over every model of this process: with the ping-pong overlapping one micro-batch's experts with the
 * other's attention, the wait is well below the calls' round trips; without it, it is their sum. Read by benchmarks
 * (ShardDecodeBench) before and after a run.
 */
public final class ExpertWaits {
    private static final LongAdder NANOS = new LongAdder(), WAITS = new LongAdder();

    private ExpertWaits() {}

    static void add(long nanos) {
        NANOS.add(nanos);
        WAITS.increment();
    }

    /** Nanoseconds waited so far. */
    public static long nanos() { return NANOS.sum(); }

    /** Waits so far (one per remote call awaited). */
    public static long waits() { return WAITS.sum(); }
}
