package io.lightmesh.decode;

import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.proto.v1.AckStatus;
import io.lightmesh.proto.v1.ReserveResponse;

import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.LongSupplier;

/**
 * A decode worker's requests and its state budget: the slot of each request, the bytes charged (held sequences plus
 * reservations made by prefill workers ahead of their hand-off), and the ids already finished or cancelled here,
 * whose late states and reservations are turned away.
 *
 * <p>Invariant: {@code usedBytes} = the charges of the slots holding a state + the charges of hand-offs in progress
 * + the open reservations, and never exceeds the budget through {@link #reserve} or {@link #admit}. This object's
 * monitor guards the budget, the reservations and the finished set, and makes "check, then claim" atomic.
 */
final class SlotTable {
    /** How many finished ids are remembered (the oldest forgotten first): enough to outlive any retry of theirs. */
    static final int FINISHED_REMEMBERED = 100_000;

    private final long budgetBytes;
    private final LongSupplier clockMs;
    private final Map<String, Slot> slots = new ConcurrentHashMap<>();
    private final Map<String, Long> reservations = new HashMap<>(); // request id -> bytes (guarded by this)
    private final Map<String, Long> reservationExpiry = new HashMap<>(); // request id -> unix ms
    private final Set<String> finished = Collections.newSetFromMap(new LinkedHashMap<>(1024, 0.75f, false) {
        @Override protected boolean removeEldestEntry(Map.Entry<String, Boolean> e) { return size() > FINISHED_REMEMBERED; }
    });
    private long usedBytes; // charged sequences + reservations (guarded by this)

    SlotTable(long budgetBytes) { this(budgetBytes, System::currentTimeMillis); }

    /** @param clockMs the wall clock reservations expire by (tests pass their own) */
    SlotTable(long budgetBytes, LongSupplier clockMs) {
        this.budgetBytes = budgetBytes;
        this.clockMs = clockMs;
    }

    long budgetBytes() { return budgetBytes; }

    synchronized long usedBytes() { return usedBytes; }

    /** The slot of a request, or null. */
    Slot get(String id) { return slots.get(id); }

    /** The slot of a request, made when it has none. */
    Slot slot(String id) { return slots.computeIfAbsent(id, Slot::new); }

    Collection<Slot> all() { return slots.values(); }

    /** Forgets a slot that holds no budget (never charged, or its charge already given back). */
    void forget(Slot s) { slots.remove(s.id, s); }

    /** Sequences holding state now (decoding or about to). */
    int liveSequences() {
        int n = 0;
        for (Slot s : slots.values()) if (s.state != null) n++;
        return n;
    }

    /** Reservations not expired yet. */
    int pendingReservations() {
        expireReservations();
        synchronized (this) { return reservations.size(); }
    }

    synchronized boolean finished(String id) { return finished.contains(id); }

    /**
     * The slot a follower (Decode.Generate) attaches to; null when the request already finished or was cancelled here
     * and nothing is left of it.
     */
    synchronized Slot follow(String id) {
        if (finished.contains(id) && !slots.containsKey(id)) return null;
        return slot(id);
    }

    /**
     * A prefill worker asks for room ahead of its hand-off (StateTransfer.Reserve). A second reservation of the same
     * request replaces the first; one for a request finished or cancelled here is granted and holds nothing.
     */
    ReserveResponse reserve(String id, long bytes, long ttlMs) {
        expireReservations();
        ReserveResponse.Builder r = ReserveResponse.newBuilder();
        synchronized (this) {
            Long had = reservations.remove(id);
            if (had != null) usedBytes -= had;
            if (finished.contains(id)) {
                // finished or cancelled here (a prefill worker took its task again after the router cancelled it):
                // nothing is held for it, or the room would stay taken until the reservation's TTL, and its state,
                // if sent, is answered DUPLICATE and committed. Granted, so that the prefill worker neither waits
                // for room nor marks this worker full.
                r.setGranted(true).setDetail("request finished or cancelled here: nothing reserved");
            } else if (usedBytes + bytes <= budgetBytes) {
                usedBytes += bytes;
                reservations.put(id, bytes);
                reservationExpiry.put(id, clockMs.getAsLong() + Math.max(1000, ttlMs));
                r.setGranted(true);
            } else {
                r.setGranted(false).setDetail("budget " + budgetBytes + " bytes, " + usedBytes + " in use");
            }
            r.setFreeBytes(budgetBytes - usedBytes);
        }
        return r.build();
    }

    /**
     * What a hand-off's header is answered: {@code ACCEPTED} when its {@code charge} is now charged (its reservation,
     * if any, replaced by it), else why not. Either way the request's reservation is given back.
     */
    record Admission(AckStatus status, String detail) {
        boolean charged() { return status == AckStatus.ACK_STATUS_ACCEPTED; }
    }

    synchronized Admission admit(String id, long charge) {
        Slot existing = slots.get(id);
        Long reserved = reservations.remove(id); // never leave room reserved for a state refused here
        reservationExpiry.remove(id);
        if (reserved != null) usedBytes -= reserved;
        if (finished.contains(id) || (existing != null && existing.state != null)) {
            return new Admission(AckStatus.ACK_STATUS_DUPLICATE, finished.contains(id) ? "finished or cancelled" : "already held");
        }
        if (usedBytes + charge > budgetBytes) {
            return new Admission(AckStatus.ACK_STATUS_REJECTED_NO_CAPACITY, "needs " + charge + " bytes, " + (budgetBytes - usedBytes) + " free");
        }
        usedBytes += charge;
        return new Admission(AckStatus.ACK_STATUS_ACCEPTED, "");
    }

    /** Gives back bytes charged by {@link #admit} for a state that will not be kept. */
    synchronized void refund(long bytes) { usedBytes -= bytes; }

    /** A received state's claim on its request's slot: the slot, or why the state is refused. */
    record Claim(Slot slot, AckStatus status, String detail) {}

    /**
     * A received state takes its request's slot, with the charge its header paid (which the slot now holds); refused
     * as expired when the request was cancelled meanwhile, as a duplicate when another hand-off of it won.
     */
    synchronized Claim claim(String id, SequenceState state, long charge) {
        if (finished.contains(id)) return new Claim(null, AckStatus.ACK_STATUS_REJECTED_EXPIRED, "cancelled");
        Slot s = slot(id);
        if (s.state != null) return new Claim(null, AckStatus.ACK_STATUS_DUPLICATE, "already held");
        s.state = state;
        s.charge = charge;
        return new Claim(s, AckStatus.ACK_STATUS_ACCEPTED, "");
    }

    /** Undoes a {@link #claim} whose state cannot be generated from: the charge goes back with the hand-off. */
    synchronized void unclaim(Slot s) {
        s.state = null;
        s.charge = 0;
        slots.remove(s.id, s);
    }

    /**
     * Frees a sequence's state and budget and forgets the slot; its id is remembered as finished, so that a late copy
     * of its state is refused.
     */
    void release(Slot s) {
        synchronized (this) {
            usedBytes -= s.charge;
            s.charge = 0;
            finished.add(s.id);
        }
        s.discardSequence();
        slots.remove(s.id, s);
        s.endSpan();
    }

    /**
     * Marks a request cancelled here: its reservation is given back and a state arriving later is refused. The slot
     * (null when none) is the caller's to fail and free.
     */
    Slot cancel(String id) {
        Slot s = slots.get(id);
        synchronized (this) {
            Long r = reservations.remove(id);
            if (r != null) { usedBytes -= r; reservationExpiry.remove(id); }
            finished.add(id);
        }
        return s;
    }

    private synchronized void expireReservations() {
        long now = clockMs.getAsLong();
        reservationExpiry.entrySet().removeIf(e -> {
            if (e.getValue() > now) return false;
            usedBytes -= reservations.remove(e.getKey());
            return true;
        });
    }
}
