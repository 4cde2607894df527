package io.lightmesh.mesh;

import io.lightmesh.proto.v1.ExpertAssignment;
import io.lightmesh.proto.v1.ExpertShardInfo;
import io.lightmesh.proto.v1.LayerExperts;
import io.lightmesh.proto.v1.PlacementMap;
import io.lightmesh.proto.v1.ShardPlacement;
import io.lightmesh.proto.v1.WorkerInfo;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExpertPlacementTest {

    @Test
    void roundRobinHasOneOwnerPerPairAndVersionZero() {
        ExpertPlacement p = ExpertPlacement.roundRobin(2, 5, List.of("a:1", "b:2"));
        assertEquals(0, p.version());
        assertTrue(p.missing().isEmpty());
        for (int l = 0; l < 2; l++) {
            for (int e = 0; e < 5; e++) {
                assertArrayEquals(new int[] {e % 2}, p.replicas(l, e), l + "/" + e);
                assertEquals(e % 2, p.shardOf(l, e));
            }
        }
        assertArrayEquals(new int[] {1, 3}, ExpertPlacement.expertsOf(1, 2, 5));
    }

    @Test
    void explicitHoldingsGiveReplicasAndMissingPairs() {
        // A: layer 0 all four experts, layer 1 experts 0 and 1; B: layer 0 expert 2, layer 1 experts 1, 2
        ExpertPlacement.Shard a = ExpertPlacement.Shard.of("A", "a:1", Map.of(0, new int[] {3, 2, 1, 0}, 1, new int[] {1, 0}));
        ExpertPlacement.Shard b = ExpertPlacement.Shard.of("B", "b:1", Map.of(0, new int[] {2}, 1, new int[] {2, 1, 1}));
        ExpertPlacement p = new ExpertPlacement(2, 4, List.of(a, b), 7);
        assertEquals(7, p.version());
        assertArrayEquals(new int[] {0, 1}, p.replicas(0, 2));
        assertArrayEquals(new int[] {0}, p.replicas(0, 3));
        assertArrayEquals(new int[] {0, 1}, p.replicas(1, 1));
        assertArrayEquals(new int[] {1}, p.replicas(1, 2));
        assertArrayEquals(new int[0], p.replicas(1, 3));
        assertEquals(-1, p.shardOf(1, 3));
        assertEquals(List.of("1/3"), p.missing());
        assertEquals(1, p.indexOf("B"));
        assertEquals(-1, p.indexOf("C"));
        assertArrayEquals(new int[] {1, 2}, b.explicitExperts().get(1), "sorted, duplicates dropped");
        assertArrayEquals(new int[] {0, 1, 2, 3, 4, 5}, a.pairs(2, 4));
        assertFalse(a.holds(2, 0), "a layer not listed holds nothing");
    }

    @Test
    void protoRoundTripKeepsVersionAndBothForms() {
        ExpertPlacement.Shard product = new ExpertPlacement.Shard("expert-0", "h:1", new int[] {1}, new int[] {0, 2});
        ExpertPlacement.Shard explicit = ExpertPlacement.Shard.ofPairs("expert-1", "h:2", 3, new int[] {0, 1, 2, 3, 5, 4});
        ExpertPlacement p = new ExpertPlacement(2, 3, List.of(product, explicit), 42);
        PlacementMap m = p.toProto();
        assertEquals(42, m.getVersion());
        assertEquals(List.of(1), m.getShards(0).getAssignment().getLayersList(), "the product form is written as the first version's");
        assertEquals(0, m.getShards(0).getLayerExpertsCount());
        assertEquals(2, m.getShards(1).getLayerExpertsCount(), "explicit holdings are written per layer");
        ExpertPlacement back = ExpertPlacement.fromProto(m);
        assertEquals(p, back);
        for (int l = 0; l < 2; l++) for (int e = 0; e < 3; e++) assertArrayEquals(p.replicas(l, e), back.replicas(l, e));
        assertEquals(17, back.withVersion(17).version());
    }

    @Test
    void firstVersionMapsStayReadable() {
        PlacementMap old = PlacementMap.newBuilder().setNumLayers(2).setNumExperts(2)
                .addShards(ShardPlacement.newBuilder().setShardId("s0").setAddress("x:1").setAssignment(ExpertAssignment.newBuilder().addExperts(0)))
                .addShards(ShardPlacement.newBuilder().setShardId("s1").setAddress("x:2").setAssignment(ExpertAssignment.newBuilder().addExperts(1)))
                .build();
        ExpertPlacement p = ExpertPlacement.fromProto(old);
        assertEquals(0, p.version());
        assertTrue(p.missing().isEmpty());
        assertArrayEquals(new int[] {1}, p.replicas(1, 1));
    }

    @Test
    void describeAnswersAreReadInBothForms() {
        WorkerInfo newer = WorkerInfo.newBuilder().setWorkerId("e0").setExperts(ExpertAssignment.newBuilder().addExperts(0))
                .setExpertShard(ExpertShardInfo.newBuilder().addHeld(LayerExperts.newBuilder().setLayer(1).addExperts(3))).build();
        ExpertPlacement.Shard s = ExpertPlacement.Shard.fromWorkerInfo(newer, "t:1");
        assertTrue(s.holds(1, 3));
        assertFalse(s.holds(0, 0), "the exact holdings win over the first version's form");
        assertEquals("t:1", s.address());
        WorkerInfo old = WorkerInfo.newBuilder().setWorkerId("e1").setExperts(ExpertAssignment.newBuilder().addExperts(0)).build();
        ExpertPlacement.Shard o = ExpertPlacement.Shard.fromWorkerInfo(old, "t:2");
        assertTrue(o.holds(5, 0));
        assertFalse(o.holds(5, 1));
    }

    @Test
    void malformedPlacementsAreRefused() {
        ExpertPlacement.Shard a = ExpertPlacement.Shard.of("A", "a:1", Map.of(0, new int[] {0}));
        assertThrows(IllegalArgumentException.class, () -> new ExpertPlacement(1, 1, List.of(a, a.at("a:2"))), "one id twice");
        assertThrows(IllegalArgumentException.class, () -> new ExpertPlacement(1, 1, List.of(a), -1));
        assertThrows(IllegalArgumentException.class, () -> new ExpertPlacement(0, 1, List.of(a)));
        assertThrows(IllegalArgumentException.class, () -> ExpertPlacement.expertsOf(2, 2, 4));
    }
}
