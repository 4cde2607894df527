package io.lightmesh.engine.bench;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.concurrent.CountDownLatch;

/**
 * The machine's streaming read bandwidth as the decode kernels see it: every thread sums its own contiguous slice
 * of an off-heap buffer much larger than the caches with the same vector loads the matmul kernels use.
 *
 * <p>On a machine shared with other jobs the bandwidth moves with their load, so the bench samples it between
 * decode segments (same moments, same load) as well as on its own, and keeps the best of each.
 */
final class MemoryBandwidth implements AutoCloseable {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    private final Arena arena = Arena.ofShared();
    private final MemorySegment buf;
    private final int threads;
    private final long slice;
    private double best;
    private float sink;

    MemoryBandwidth(long bytes, int threads) {
        this.threads = threads;
        this.slice = bytes / threads / 4096 * 4096;
        this.buf = arena.allocate(slice * threads, 4096);
        buf.fill((byte) 1); // fault every page in before timing
    }

    /** One timed pass over the whole buffer; returns bytes/s and keeps the best. */
    double sample() throws InterruptedException {
        float[] sums = new float[threads];
        CountDownLatch go = new CountDownLatch(1);
        Thread[] ts = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            int id = t;
            ts[t] = Thread.ofPlatform().start(() -> {
                try { go.await(); } catch (InterruptedException e) { return; }
                sums[id] = sum(buf, id * slice, slice);
            });
        }
        long t0 = System.nanoTime();
        go.countDown();
        for (Thread t : ts) t.join();
        double rate = slice * threads / ((System.nanoTime() - t0) / 1e9);
        for (float s : sums) sink += s;
        best = Math.max(best, rate);
        return rate;
    }

    double best() { return best; }

    long bytes() { return slice * threads; }

    @Override
    public void close() {
        if (sink == 42f) System.out.print(""); // keep the sums alive
        arena.close();
    }

    private static float sum(MemorySegment seg, long from, long len) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        long step = F.vectorByteSize();
        for (long o = from; o + 4 * step <= from + len; o += 4 * step) {
            a0 = a0.add(FloatVector.fromMemorySegment(F, seg, o, ByteOrder.LITTLE_ENDIAN));
            a1 = a1.add(FloatVector.fromMemorySegment(F, seg, o + step, ByteOrder.LITTLE_ENDIAN));
            a2 = a2.add(FloatVector.fromMemorySegment(F, seg, o + 2 * step, ByteOrder.LITTLE_ENDIAN));
            a3 = a3.add(FloatVector.fromMemorySegment(F, seg, o + 3 * step, ByteOrder.LITTLE_ENDIAN));
        }
        return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
    }
}
