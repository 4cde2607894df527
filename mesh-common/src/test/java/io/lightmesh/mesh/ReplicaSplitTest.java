package io.lightmesh.mesh;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ReplicaSplitTest {
    static final double[] EVEN4 = {1, 1, 1, 1};

    @Test
    void equalWeightsDivideTheSlotsEvenlyAndTheRemainderGoesRoundWithTheRotation() {
        assertArrayEquals(new int[] {4, 4, 4, 4}, ReplicaSplit.quotas(16, EVEN4, 0));
        assertArrayEquals(new int[] {2, 2, 1, 1}, ReplicaSplit.quotas(6, EVEN4, 0));
        assertArrayEquals(new int[] {1, 2, 2, 1}, ReplicaSplit.quotas(6, EVEN4, 1));
        assertArrayEquals(new int[] {2, 1, 1, 2}, ReplicaSplit.quotas(6, EVEN4, 3));
        assertArrayEquals(new int[] {0, 0, 1, 0}, ReplicaSplit.quotas(1, EVEN4, 6));
        assertArrayEquals(new int[] {0, 0, 0, 0}, ReplicaSplit.quotas(0, EVEN4, 0));
        // one slot per call (decode of one sequence), rotation advanced per call: every replica in turn
        int[] total = new int[4];
        for (int call = 0; call < 400; call++) {
            int[] q = ReplicaSplit.quotas(1, EVEN4, call);
            for (int i = 0; i < 4; i++) total[i] += q[i];
        }
        assertArrayEquals(new int[] {100, 100, 100, 100}, total);
    }

    @Test
    void quotasSumToTheCountDifferByAtMostOneWhenEvenAndAreDeterministic() {
        SplittableRandom rnd = new SplittableRandom(7);
        for (int i = 0; i < 2_000; i++) {
            int r = rnd.nextInt(1, 6), count = rnd.nextInt(0, 200), rot = rnd.nextInt();
            double[] even = new double[r];
            java.util.Arrays.fill(even, 1);
            int[] q = ReplicaSplit.quotas(count, even, rot);
            assertArrayEquals(q, ReplicaSplit.quotas(count, even, rot), "deterministic");
            assertEquals(count, java.util.Arrays.stream(q).sum());
            int min = java.util.Arrays.stream(q).min().orElseThrow(), max = java.util.Arrays.stream(q).max().orElseThrow();
            assertTrue(max - min <= 1, java.util.Arrays.toString(q));
            double[] w = rnd.doubles(r, 0.1, 1).toArray();
            int[] wq = ReplicaSplit.quotas(count, w, rot);
            assertEquals(count, java.util.Arrays.stream(wq).sum());
            double sum = java.util.Arrays.stream(w).sum();
            for (int j = 0; j < r; j++) assertTrue(Math.abs(wq[j] - count * w[j] / sum) < 1, "proportional: " + java.util.Arrays.toString(wq));
        }
    }

    @Test
    void weightsGiveProportionalShares() {
        assertArrayEquals(new int[] {10, 20}, ReplicaSplit.quotas(30, new double[] {0.5, 1}, 0));
        assertArrayEquals(new int[] {4, 8, 8, 8}, ReplicaSplit.quotas(28, new double[] {0.5, 1, 1, 1}, 0));
    }

    @Test
    void badInputIsRefused() {
        assertThrows(IllegalArgumentException.class, () -> ReplicaSplit.quotas(3, new double[0], 0));
        assertThrows(IllegalArgumentException.class, () -> ReplicaSplit.quotas(3, new double[] {1, 0}, 0));
        assertThrows(IllegalArgumentException.class, () -> ReplicaSplit.quotas(-1, EVEN4, 0));
    }

    @Test
    void aReplicaWithinTheThresholdKeepsItsEvenShare() {
        assertEquals(1, ReplicaSplit.nextWeight(1, 140, new double[] {100, 110, 95}));
        assertEquals(1, ReplicaSplit.nextWeight(1, 100, new double[] {300, 310})); // faster than the others: never above 1
        assertEquals(1, ReplicaSplit.nextWeight(1, Double.NaN, new double[] {100}), "not measured: kept");
        assertEquals(0.7, ReplicaSplit.nextWeight(0.7, 300, new double[] {Double.NaN}), "nothing to compare with: kept");
    }

    @Test
    void aMeasurablySlowerReplicaMovesTowardItsInverseSpeedDampedAndBackWhenItRecovers() {
        double[] others = {100, 100, 100};
        double w = ReplicaSplit.nextWeight(1, 200, others); // 2x slower: target 0.5, half the gap per update
        assertEquals(0.75, w, 1e-9);
        w = ReplicaSplit.nextWeight(w, 200, others);
        assertEquals(0.625, w, 1e-9);
        for (int i = 0; i < 20; i++) w = ReplicaSplit.nextWeight(w, 200, others);
        assertEquals(0.5, w, 1e-3);
        // between RECOVERED and SLOW: a weighted-down replica stays weighted (no flapping at the threshold)
        double mid = ReplicaSplit.nextWeight(w, 130, others);
        assertTrue(mid > w && mid < 1, "moves toward 1/1.3: " + mid);
        // recovered: back to the even share
        for (int i = 0; i < 10; i++) w = ReplicaSplit.nextWeight(w, 105, others);
        assertEquals(1, w);
        // a very slow replica keeps a floor share
        w = 1;
        for (int i = 0; i < 30; i++) w = ReplicaSplit.nextWeight(w, 100_000, others);
        assertEquals(ReplicaSplit.MIN_WEIGHT, w, 1e-9);
    }

    @Test
    void theRoundTripWindowTakesTheMedianBatchAndForgetsWhatIsOlderThanTheWindow() {
        RoundTripWindow w = new RoundTripWindow(1_000, 4);
        long t = 10_000_000_000L;
        assertTrue(Double.isNaN(w.microsPerSlot(t, 1)));
        w.add(t, 10, 1_000);                  // 100 per slot
        w.add(t + 100_000_000L, 10, 2_000);   // 200
        w.add(t + 200_000_000L, 10, 900_000); // one batch that waited for a connection
        assertEquals(200, w.microsPerSlot(t + 300_000_000L, 1), 1e-9, "the median batch, not the outlier");
        assertTrue(Double.isNaN(w.microsPerSlot(t + 300_000_000L, 31)), "too few slots");
        assertEquals((200 + 90_000) / 2.0, w.microsPerSlot(t + 1_050_000_000L, 1), 1e-9, "the first batch has left the window");
        assertTrue(Double.isNaN(w.microsPerSlot(t + 5_000_000_000L, 1)), "all gone");
        for (int i = 0; i < 5; i++) w.add(t + 5_000_000_000L, 4, 400); // capacity 4: the oldest are overwritten
        assertEquals(100, w.microsPerSlot(t + 5_000_000_000L, 1), 1e-9);
    }
}
