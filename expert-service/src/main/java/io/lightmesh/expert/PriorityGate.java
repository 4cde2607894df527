package io.lightmesh.expert;

import java.util.ArrayDeque;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.LongSupplier;

/**
 * Admits expert batches to a shard's device {@code permits} at a time, decode batches ahead of prefill batches, as
 * serving engines schedule a step's decode work before prefill: when a permit frees, the next holder is
 * <ol>
 *   <li>the oldest waiting prefill batch if it has waited {@code maxPrefillWaitNanos} or longer (aged: no starvation),</li>
 *   <li>else the oldest waiting decode batch,</li>
 *   <li>else the oldest waiting prefill batch.</li>
 * </ol>
 * Each class is FIFO. So a decode batch waits at most for the batches already on the device (with prefill split into
 * chunks of bounded rows, one chunk's compute) plus any aged prefill batches; a prefill batch is overtaken by decode
 * batches only during its first {@code maxPrefillWaitNanos} of waiting, after which it goes before every decode
 * batch. A free permit is taken at once whatever waits (no idle device while anything waits).
 *
 * <p>The device itself is {@code synchronized} ({@link io.lightmesh.engine.model.DeviceExperts#run}); a monitor
 * hands itself over in no particular order, so the order is decided here, in front of it.
 */
public final class PriorityGate {
    private final ReentrantLock lock = new ReentrantLock();
    private final int permits;
    private final long maxPrefillWaitNanos;
    private final LongSupplier clock;
    private final ArrayDeque<Waiter> decode = new ArrayDeque<>(), prefill = new ArrayDeque<>();
    private int held; // guarded by lock
    private long overtakes, aged; // guarded by lock: decode batches admitted while a prefill one waited; prefill ones admitted by age

    /** One waiting batch: granted by the releaser, which hands its permit over directly. */
    private final class Waiter {
        final boolean urgent;
        final long since;
        final Condition turn = lock.newCondition();
        boolean granted;

        Waiter(boolean urgent, long since) {
            this.urgent = urgent;
            this.since = since;
        }
    }

    /**
     * @param permits             batches on the device at once (1 for a device whose calls are serialized anyway)
     * @param maxPrefillWaitNanos how long a prefill batch may be overtaken by decode batches
     */
    public PriorityGate(int permits, long maxPrefillWaitNanos) {
        this(permits, maxPrefillWaitNanos, System::nanoTime);
    }

    PriorityGate(int permits, long maxPrefillWaitNanos, LongSupplier clock) {
        if (permits < 1) throw new IllegalArgumentException("permits " + permits + " < 1");
        this.permits = permits;
        this.maxPrefillWaitNanos = Math.max(0, maxPrefillWaitNanos);
        this.clock = clock;
    }

    /** Blocks until this batch may use the device; {@link #release} after. {@code urgent}: a decode batch. */
    public void acquire(boolean urgent) throws InterruptedException {
        lock.lock();
        try {
            if (held < permits && decode.isEmpty() && prefill.isEmpty()) { // nothing waits: take it
                held++;
                return;
            }
            Waiter w = new Waiter(urgent, clock.getAsLong());
            (urgent ? decode : prefill).addLast(w);
            if (held < permits) grantNext(); // a free permit with waiters (only after an interrupted handover)
            try {
                while (!w.granted) w.turn.await();
            } catch (InterruptedException e) {
                if (w.granted) { // the permit came anyway: pass it on
                    held--;
                    grantNext();
                } else {
                    (urgent ? decode : prefill).remove(w);
                }
                throw e;
            }
        } finally {
            lock.unlock();
        }
    }

    /** Without waiting: true when a permit was free and nothing waited (then {@link #release} after). */
    public boolean tryAcquire() {
        lock.lock();
        try {
            if (held < permits && decode.isEmpty() && prefill.isEmpty()) {
                held++;
                return true;
            }
            return false;
        } finally {
            lock.unlock();
        }
    }

    /** Gives the permit back: to the next waiter by the order above, or free. */
    public void release() {
        lock.lock();
        try {
            if (held <= 0) throw new IllegalStateException("release without acquire");
            held--;
            grantNext();
        } finally {
            lock.unlock();
        }
    }

    /** Hands free permits to waiters. Called with the lock held. */
    private void grantNext() {
        while (held < permits && !(decode.isEmpty() && prefill.isEmpty())) {
            Waiter oldPrefill = prefill.peekFirst();
            Waiter next;
            if (oldPrefill != null && (decode.isEmpty() || clock.getAsLong() - oldPrefill.since >= maxPrefillWaitNanos)) {
                next = prefill.pollFirst();
                if (!decode.isEmpty()) aged++;
            } else {
                next = decode.pollFirst();
                if (oldPrefill != null) overtakes++;
            }
            held++;
            next.granted = true;
            next.turn.signal();
        }
    }

    /** What the gate did so far, and what waits now. */
    public record Stats(long decodeOvertakes, long prefillAged, int decodeWaiting, int prefillWaiting, int held) {}

    public Stats stats() {
        lock.lock();
        try {
            return new Stats(overtakes, aged, decode.size(), prefill.size(), held);
        } finally {
            lock.unlock();
        }
    }

    public int permits() { return permits; }

    public long maxPrefillWait(TimeUnit unit) { return unit.convert(maxPrefillWaitNanos, TimeUnit.NANOSECONDS); }
}
