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
 */
final class MemoryBandwidth {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    private MemoryBandwidth() {}

    /** Best bytes/s over {@code runs} reads of a {@code bytes}-byte buffer by {@code threads} threads. */
    static double measure(long bytes, int threads, int runs) throws InterruptedException {
        long slice = bytes / threads / 4096 * 4096;
        try (Arena arena = Arena.ofShared()) {
            MemorySegment buf = arena.allocate(slice * threads, 4096);
            buf.fill((byte) 1); // fault every page in before timing
            double best = 0;
            float sink = 0;
            for (int run = 0; run < runs; run++) {
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
                double secs = (System.nanoTime() - t0) / 1e9;
                best = Math.max(best, slice * threads / secs);
                for (float s : sums) sink += s;
            }
            if (sink == 42f) System.out.print(""); // keep the sums alive
            return best;
        }
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
