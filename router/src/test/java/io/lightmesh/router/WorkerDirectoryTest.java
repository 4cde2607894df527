package io.lightmesh.router;

import io.lightmesh.proto.v1.WorkerInfo;
import io.lightmesh.proto.v1.WorkerLoad;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * The router's choice of decode worker, from the loads last described (the directory's polling over real gRPC is
 * exercised by mesh-launcher's mesh tests).
 */
class WorkerDirectoryTest {
    private static WorkerInfo load(long budget, long used, int active, int pending) {
        return WorkerInfo.newBuilder().setLoad(WorkerLoad.newBuilder().setStateBytesBudget(budget).setStateBytesUsed(used)
                .setActiveSequences(active).setPendingSequences(pending)).build();
    }

    @Test
    void theMostFreeBudgetPerLiveSequenceWins() {
        Map<String, WorkerInfo> described = Map.of(
                "a", load(1000, 0, 3, 0),    // 1000 / 4 = 250
                "b", load(1000, 400, 0, 1),  // 600 / 2 = 300
                "c", load(2000, 1900, 0, 0)); // 100 / 1
        assertEquals("b", WorkerDirectory.pickDecode(List.of("a", "b", "c"), described, Set.of()));
        assertEquals("a", WorkerDirectory.pickDecode(List.of("a", "b", "c"), described, Set.of("b")), "one that lost the request is avoided");
    }

    @Test
    void aTargetNotDescribedIsTakenOnlyWhenNoneIs() {
        Map<String, WorkerInfo> described = Map.of("b", load(10, 10, 5, 5));
        assertEquals("b", WorkerDirectory.pickDecode(List.of("a", "b"), described, Set.of()), "a described one, however full");
        assertEquals("a", WorkerDirectory.pickDecode(List.of("a", "b"), Map.of(), Set.of()), "before the first poll: the first listed");
        assertEquals("b", WorkerDirectory.pickDecode(List.of("a", "b"), Map.of(), Set.of("a")));
    }

    @Test
    void noneLeftIsNull() {
        assertNull(WorkerDirectory.pickDecode(List.of("a"), Map.of("a", load(1, 0, 0, 0)), Set.of("a")));
        assertNull(WorkerDirectory.pickDecode(List.of(), Map.of(), Set.of()));
    }
}
