package io.lightmesh.decode;

import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateSnapshots;
import io.lightmesh.proto.v1.AckStatus;
import io.lightmesh.proto.v1.ReserveResponse;
import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The decode worker's budget and request table without gRPC or a model: reservations, a hand-off's charge from header
 * to slot, release, cancel, and the ids finished here being turned away. The worker over real gRPC is tested by
 * mesh-launcher's StateTransferTest.
 */
class SlotTableTest {
    /** Two layers: lightning, then softmax (KV), of one head of width 4. */
    private static final ModelConfig C = new ModelConfig("minimax_m1", 16, 4, 2, 2, 1, 4, 4, 10000.0, 4, 2, 4, 1e-5,
            new boolean[]{false, true}, 1f, 1f, 1f, 1f, 1f, 1f, 16, 1024, false);

    private final AtomicLong now = new AtomicLong(1_000_000);
    private final SlotTable table = new SlotTable(1000, now::get);

    /** A received state: position 0, nothing in it (the table only holds it). */
    private static SequenceState state() {
        float[][] lightning = new float[C.numLayers()][];
        for (int l = 0; l < C.numLayers(); l++) if (!C.isSoftmax(l)) lightning[l] = new float[C.numHeads() * C.headDim() * C.headDim()];
        return StateSnapshots.restore(C, 0, lightning, (layer, cache) -> {}, 1);
    }

    /** A whole hand-off: header admitted, state claimed. */
    private Slot handOff(String id, long charge) {
        assertTrue(table.admit(id, charge).charged());
        SlotTable.Claim claim = table.claim(id, state(), charge);
        assertNotNull(claim.slot(), claim.detail());
        return claim.slot();
    }

    @Test
    void reservationsAreChargedUpToTheBudgetAndNoFurther() {
        ReserveResponse a = table.reserve("a", 600, 5000);
        assertTrue(a.getGranted());
        assertEquals(400, a.getFreeBytes());
        ReserveResponse b = table.reserve("b", 500, 5000);
        assertFalse(b.getGranted(), "600 + 500 > 1000");
        assertEquals("budget 1000 bytes, 600 in use", b.getDetail());
        assertEquals(600, table.usedBytes());
        assertEquals(1, table.pendingReservations());
    }

    @Test
    void aSecondReservationOfTheSameRequestReplacesTheFirst() {
        assertTrue(table.reserve("a", 600, 5000).getGranted());
        assertTrue(table.reserve("a", 900, 5000).getGranted(), "its own 600 given back first");
        assertEquals(900, table.usedBytes());
        assertEquals(1, table.pendingReservations());
    }

    @Test
    void reservationsExpireAfterTheirTtlOfAtLeastOneSecond() {
        table.reserve("short", 100, 10); // asks 10 ms, holds 1 s
        table.reserve("long", 200, 5000);
        now.addAndGet(999);
        assertEquals(2, table.pendingReservations());
        now.addAndGet(1);
        assertEquals(1, table.pendingReservations());
        assertEquals(200, table.usedBytes());
        now.addAndGet(4000);
        assertEquals(0, table.pendingReservations());
        assertEquals(0, table.usedBytes());
    }

    @Test
    void aHeaderTurnsItsReservationIntoItsChargeAndTheSlotHoldsIt() {
        table.reserve("a", 300, 5000);
        SlotTable.Admission ad = table.admit("a", 700);
        assertEquals(AckStatus.ACK_STATUS_ACCEPTED, ad.status());
        assertEquals(700, table.usedBytes(), "the reservation replaced, not added to");
        assertEquals(0, table.pendingReservations());
        SlotTable.Claim claim = table.claim("a", state(), 700);
        assertSame(table.get("a"), claim.slot());
        assertEquals(700, claim.slot().charge);
        assertEquals(1, table.liveSequences());
        table.release(claim.slot());
        assertEquals(0, table.usedBytes());
        assertEquals(0, table.liveSequences());
        assertNull(table.get("a"));
        assertTrue(table.finished("a"));
    }

    @Test
    void aHeaderThatDoesNotFitIsRefusedAndItsReservationGivenBack() {
        table.reserve("a", 300, 5000);
        table.reserve("b", 500, 5000);
        SlotTable.Admission ad = table.admit("a", 600);
        assertEquals(AckStatus.ACK_STATUS_REJECTED_NO_CAPACITY, ad.status());
        assertEquals("needs 600 bytes, 500 free", ad.detail());
        assertEquals(500, table.usedBytes(), "only b's reservation left");
        table.refund(0);
        assertEquals(500, table.usedBytes());
    }

    @Test
    void aSecondHandOffOfAHeldRequestIsADuplicate() {
        handOff("a", 400);
        table.reserve("a", 100, 5000); // a prefill worker retrying
        SlotTable.Admission ad = table.admit("a", 400);
        assertEquals(AckStatus.ACK_STATUS_DUPLICATE, ad.status());
        assertEquals("already held", ad.detail());
        assertEquals(400, table.usedBytes(), "the retry's reservation given back");
        SlotTable.Claim late = table.claim("a", state(), 0);
        assertNull(late.slot());
        assertEquals(AckStatus.ACK_STATUS_DUPLICATE, late.status());
    }

    @Test
    void aRequestFinishedHereIsTurnedAwayEverywhere() {
        table.release(handOff("a", 400));
        ReserveResponse r = table.reserve("a", 400, 5000);
        assertTrue(r.getGranted(), "granted, so that the prefill worker neither waits nor marks this worker full");
        assertEquals("request finished or cancelled here: nothing reserved", r.getDetail());
        assertEquals(0, table.usedBytes(), "nothing held for it");
        assertEquals(AckStatus.ACK_STATUS_DUPLICATE, table.admit("a", 400).status());
        assertEquals("finished or cancelled", table.admit("a", 400).detail());
        assertNull(table.follow("a"), "a follower finds nothing");
    }

    @Test
    void cancelGivesBackTheReservationAndExpiresALateState() {
        table.reserve("a", 300, 5000);
        Slot follower = table.follow("a");
        assertSame(follower, table.cancel("a"));
        assertEquals(0, table.usedBytes());
        assertEquals(0, table.pendingReservations());
        SlotTable.Claim late = table.claim("a", state(), 0);
        assertNull(late.slot());
        assertEquals(AckStatus.ACK_STATUS_REJECTED_EXPIRED, late.status());
        assertNull(table.cancel("never-seen"), "nothing held");
        assertTrue(table.finished("never-seen"), "but a state arriving later is refused");
    }

    @Test
    void anUnclaimedStateLeavesNoSlotAndItsChargeToTheHandOff() {
        assertTrue(table.admit("a", 400).charged());
        Slot s = table.claim("a", state(), 400).slot();
        table.unclaim(s);
        assertNull(table.get("a"));
        assertEquals(0, table.liveSequences());
        assertEquals(400, table.usedBytes(), "still charged until the hand-off refunds it");
        table.refund(400);
        assertEquals(0, table.usedBytes());
        assertFalse(table.finished("a"), "a good copy may still come");
    }
}
