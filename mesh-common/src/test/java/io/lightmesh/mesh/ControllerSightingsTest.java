package io.lightmesh.mesh;

import io.lightmesh.proto.v1.ControllerHeartbeat;
import io.lightmesh.proto.v1.ControllerSeen;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** An expert shard's memory of the placement controllers' heartbeats, on a clock the test drives. */
class ControllerSightingsTest {
    final AtomicLong clock = new AtomicLong(1_000_000);
    final ControllerSightings sightings = new ControllerSightings(clock::get);

    static ControllerHeartbeat beat(String id, long intervalMs, long startedUnixMs) {
        return ControllerHeartbeat.newBuilder().setControllerId(id).setIntervalMs(intervalMs).setStartedUnixMs(startedUnixMs).build();
    }

    @Test
    void heartbeatsAreReportedNewestFirstWithTheirAgeAndLiveWhileFresh() {
        sightings.heard(beat("a", 1000, 10));
        clock.addAndGet(700);
        sightings.heard(beat("b", 100, 20));
        clock.addAndGet(300);
        List<ControllerSeen> r = sightings.report();
        assertEquals(List.of("b", "a"), r.stream().map(ControllerSeen::getControllerId).toList());
        assertEquals(300, r.get(0).getAgeMs());
        assertEquals(1000, r.get(1).getAgeMs());
        assertEquals(20, r.get(0).getStartedUnixMs());
        assertEquals(100, r.get(0).getIntervalMs());
        // live while the heartbeat is at most 3 intervals + 2 s old: b (100 ms polls) until 2.3 s, a (1 s) until 5 s
        clock.addAndGet(2100);
        r = sightings.report();
        assertFalse(ControllerSightings.live(r.stream().filter(s -> s.getControllerId().equals("b")).findFirst().orElseThrow()), r.toString());
        assertTrue(ControllerSightings.live(r.stream().filter(s -> s.getControllerId().equals("a")).findFirst().orElseThrow()), r.toString());
        // a new heartbeat makes it live again
        sightings.heard(beat("b", 100, 20));
        assertTrue(ControllerSightings.live(sightings.report().getFirst()));
    }

    @Test
    void aControllerIsForgottenAfterTenIntervalsAndAMinuteAndAtMostSixteenAreKept() {
        sightings.heard(beat("old", 1000, 1));
        clock.addAndGet(59_999);
        assertEquals(1, sightings.report().size());
        clock.addAndGet(2);
        assertEquals(0, sightings.report().size(), "forgotten after 60 s");
        for (int i = 0; i < 20; i++) {
            sightings.heard(beat("c" + i, 1000, i));
            clock.addAndGet(1);
        }
        List<ControllerSeen> r = sightings.report();
        assertEquals(ControllerSightings.MAX, r.size());
        assertEquals("c19", r.getFirst().getControllerId());
        assertTrue(r.stream().noneMatch(s -> s.getControllerId().equals("c0")), "the oldest went first");
    }

    @Test
    void aHeartbeatWithoutAnIdIsIgnoredAndItsIntervalClamped() {
        sightings.heard(beat("", 1000, 1));
        sightings.heard(beat("x", 0, 1));
        List<ControllerSeen> r = sightings.report();
        assertEquals(1, r.size());
        assertEquals(10, r.getFirst().getIntervalMs());
    }

    @Test
    void theLaterStartedControllerWinsTiesGoToTheGreaterId() {
        assertTrue(ControllerSightings.later(2, "a", 1, "b"));
        assertFalse(ControllerSightings.later(1, "b", 2, "a"));
        assertTrue(ControllerSightings.later(5, "b", 5, "a"));
        assertFalse(ControllerSightings.later(5, "a", 5, "b"));
    }
}
