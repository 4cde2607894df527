package io.lightmesh.expert;

import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PriorityGateTest {
    private static final long MS = 1_000_000;

    /** A thread that waits at the gate, records its name once admitted, and releases at once. */
    private static Thread waiter(PriorityGate g, String name, boolean urgent, List<String> order) {
        Thread t = Thread.ofPlatform().name(name).start(() -> {
            try {
                g.acquire(urgent);
                order.add(name);
                g.release();
            } catch (InterruptedException e) {
                order.add(name + " interrupted");
            }
        });
        return t;
    }

    /** Waits until the gate lists this many waiters of each class (the threads queued in the order started). */
    private static void awaitWaiting(PriorityGate g, int decode, int prefill) throws InterruptedException {
        long until = System.nanoTime() + 10_000 * MS;
        while (g.stats().decodeWaiting() != decode || g.stats().prefillWaiting() != prefill) {
            assertTrue(System.nanoTime() < until, "waiters queued: " + g.stats());
            Thread.sleep(1);
        }
    }

    @Test
    void waitingDecodeBatchesGoBeforeWaitingPrefillBatchesEachInArrivalOrder() throws Exception {
        AtomicLong now = new AtomicLong();
        PriorityGate g = new PriorityGate(1, 20 * MS, now::get);
        List<String> order = new CopyOnWriteArrayList<>();
        g.acquire(false); // a prefill batch on the device
        Thread p1 = waiter(g, "p1", false, order);
        awaitWaiting(g, 0, 1);
        Thread p2 = waiter(g, "p2", false, order);
        awaitWaiting(g, 0, 2);
        Thread d1 = waiter(g, "d1", true, order);
        awaitWaiting(g, 1, 2);
        Thread d2 = waiter(g, "d2", true, order);
        awaitWaiting(g, 2, 2);
        assertFalse(g.tryAcquire(), "no permit is free while the device is held");
        g.release();
        for (Thread t : List.of(p1, p2, d1, d2)) t.join(10_000);
        assertEquals(List.of("d1", "d2", "p1", "p2"), order);
        assertEquals(2, g.stats().decodeOvertakes());
        assertEquals(0, g.stats().held());
        assertTrue(g.tryAcquire(), "free again once every waiter passed");
        g.release();
    }

    @Test
    void aPrefillBatchIsOvertakenOnlyForItsBoundThenGoesFirst() throws Exception {
        AtomicLong now = new AtomicLong();
        PriorityGate g = new PriorityGate(1, 20 * MS, now::get);
        List<String> order = new CopyOnWriteArrayList<>();
        g.acquire(true);
        Thread p1 = waiter(g, "p1", false, order); // waits from t = 0
        awaitWaiting(g, 0, 1);
        now.set(5 * MS);
        Thread d1 = waiter(g, "d1", true, order);
        awaitWaiting(g, 1, 1);
        // within its bound p1 is overtaken: d1 first; then p1 (nothing else waits)
        g.release();
        p1.join(10_000);
        d1.join(10_000);
        assertEquals(List.of("d1", "p1"), order);

        // past its bound (20 ms waited) a prefill batch goes before a decode batch that waits too
        order.clear();
        g.acquire(true);
        now.set(100 * MS);
        Thread p2 = waiter(g, "p2", false, order);
        awaitWaiting(g, 0, 1);
        now.set(120 * MS);
        Thread d2 = waiter(g, "d2", true, order);
        awaitWaiting(g, 1, 1);
        g.release();
        p2.join(10_000);
        d2.join(10_000);
        assertEquals(List.of("p2", "d2"), order);
        assertEquals(1, g.stats().prefillAged());
    }

    @Test
    void anInterruptedWaiterLeavesTheQueueAndLeaksNoPermit() throws Exception {
        PriorityGate g = new PriorityGate(1, 20 * MS);
        List<String> order = new CopyOnWriteArrayList<>();
        g.acquire(false);
        Thread p1 = waiter(g, "p1", false, order);
        awaitWaiting(g, 0, 1);
        p1.interrupt();
        p1.join(10_000);
        assertEquals(List.of("p1 interrupted"), order);
        awaitWaiting(g, 0, 0);
        g.release();
        assertEquals(0, g.stats().held());
        assertTrue(g.tryAcquire());
        g.release();
        assertThrows(IllegalStateException.class, g::release, "a release without an acquire is a bug");
    }

    @Test
    void severalPermitsAdmitThatManyAtOnce() throws Exception {
        PriorityGate g = new PriorityGate(2, 20 * MS);
        assertTrue(g.tryAcquire());
        assertTrue(g.tryAcquire());
        assertFalse(g.tryAcquire());
        g.release();
        g.acquire(false); // a free permit and nothing waiting: at once
        assertEquals(2, g.stats().held());
        g.release();
        g.release();
        assertEquals(20, g.maxPrefillWait(TimeUnit.MILLISECONDS));
    }
}
