package io.lightmesh.engine.backend;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.IntConsumer;

/**
 * A fixed set of daemon worker threads that run the tasks of one parallel loop at a time, the calling thread joining
 * in. Tasks are claimed one by one from a shared counter, so a core slowed by other load simply takes fewer.
 *
 * <p>Workers spin for a short while before parking: a decoded token issues about a hundred short loops (one per
 * matrix product), and a park/unpark round trip costs tens of microseconds, which would be a large share of a
 * memory-bound matrix-vector product of a few hundred microseconds.
 *
 * <p>One loop runs at a time; concurrent callers queue on a lock. A loop started from inside a task (nested) runs
 * inline on the calling thread.
 */
final class WorkerPool implements AutoCloseable {
    /** How long an idle worker, or a caller waiting for stragglers, spins before parking. */
    private static final long SPIN_NANOS = Long.getLong("lightmesh.vector.spinMicros", 200) * 1000;

    private static final class Job {
        final IntConsumer body;
        final int tasks;
        final Thread caller;
        final AtomicInteger next = new AtomicInteger(), done = new AtomicInteger();
        volatile Throwable failure;

        Job(IntConsumer body, int tasks, Thread caller) {
            this.body = body;
            this.tasks = tasks;
            this.caller = caller;
        }

        void work() {
            int t;
            while ((t = next.getAndIncrement()) < tasks) {
                try {
                    body.accept(t);
                } catch (Throwable e) {
                    if (failure == null) failure = e;
                }
                if (done.incrementAndGet() == tasks) LockSupport.unpark(caller);
            }
        }
    }

    private final Thread[] workers;
    private final ReentrantLock lock = new ReentrantLock();
    private volatile Job current;
    private volatile boolean closed;

    /** {@code threads} counts the caller: threads - 1 workers are started. */
    WorkerPool(int threads, String name) {
        if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        workers = new Thread[threads - 1];
        for (int i = 0; i < workers.length; i++) {
            workers[i] = Thread.ofPlatform().daemon().name(name + "-" + i).unstarted(this::workerLoop);
            workers[i].start();
        }
    }

    int threads() { return workers.length + 1; }

    /** Runs body(0..tasks-1), spread over the workers and the caller; returns when all are done. */
    void run(int tasks, IntConsumer body) {
        if (tasks <= 0) return;
        if (tasks == 1 || workers.length == 0 || lock.isHeldByCurrentThread() || isWorker()) {
            for (int t = 0; t < tasks; t++) body.accept(t);
            return;
        }
        if (closed) throw new IllegalStateException("worker pool is closed");
        lock.lock();
        try {
            Job job = new Job(body, tasks, Thread.currentThread());
            current = job;
            for (Thread w : workers) LockSupport.unpark(w);
            job.work();
            long waitFrom = System.nanoTime();
            while (job.done.get() < tasks) {
                if (System.nanoTime() - waitFrom < SPIN_NANOS) Thread.onSpinWait();
                else LockSupport.park(this);
            }
            current = null;
            Throwable f = job.failure;
            if (f instanceof RuntimeException re) throw re;
            if (f instanceof Error er) throw er;
            if (f != null) throw new RuntimeException(f);
        } finally {
            lock.unlock();
        }
    }

    private boolean isWorker() {
        Thread me = Thread.currentThread();
        for (Thread w : workers) if (w == me) return true;
        return false;
    }

    private void workerLoop() {
        Job seen = null;
        long idleFrom = System.nanoTime();
        while (!closed) {
            Job j = current;
            if (j != null && j != seen) {
                seen = j;
                j.work();
                idleFrom = System.nanoTime();
            } else if (System.nanoTime() - idleFrom < SPIN_NANOS) {
                Thread.onSpinWait();
            } else {
                LockSupport.park(this); // a new job unparks every worker; the permit covers a job set just before
            }
        }
    }

    @Override
    public void close() {
        closed = true;
        for (Thread w : workers) LockSupport.unpark(w);
    }
}
