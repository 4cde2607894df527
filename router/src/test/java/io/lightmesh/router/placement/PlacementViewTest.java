package io.lightmesh.router.placement;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The /admin/placement JSON shape, and the shard demand arithmetic. */
class PlacementViewTest {
    @Test
    void jsonHasTheIssuesShape() {
        PlacementView v = new PlacementView(7, 60, 1.08, 2.9, 3,
                List.of(new PlacementView.ShardView("expert-0", "h:1", List.of(new int[]{0, 3}, new int[]{1, 5}), 812.44444)),
                List.of(new PlacementView.ExpertView(0, 3, 1730.2, List.of("expert-0", "expert-2"))));
        assertEquals("{\"version\":7,\"window_s\":60.0,\"imbalance\":1.08,\"imbalance_static\":2.9,"
                + "\"shards\":[{\"id\":\"expert-0\",\"address\":\"h:1\",\"experts\":[[0,3],[1,5]],\"load\":812.444}],"
                + "\"experts\":[{\"layer\":0,\"expert\":3,\"load\":1730.2,\"replicas\":[\"expert-0\",\"expert-2\"]}]}", v.toJson());
    }

    @Test
    void desiredShardsFollowLoadOverCapacityClamped() {
        ShardDemand d = new ShardDemand(0.5, 2, 6);
        assertEquals(4, d.desired(4000, 2000, 3));   // 4000 / (2000 * 0.5) = 4
        assertEquals(5, d.desired(4001, 2000, 3));   // ceil
        assertEquals(6, d.desired(1e9, 2000, 3));    // clamped to max
        assertEquals(2, d.desired(10, 2000, 3));     // clamped to min
        assertEquals(2, d.desired(0, Double.NaN, 5)); // no load: min
        assertEquals(3, d.desired(500, Double.NaN, 3)); // capacity unknown: stay
        assertArrayEquals(new int[]{2, 4}, ShardDemand.parseRange(" 2:4 "));
        for (String bad : List.of("4:2", "0:3", "2", "a:b", "2:3:4")) {
            assertThrows(IllegalArgumentException.class, () -> ShardDemand.parseRange(bad), bad);
        }
        assertThrows(IllegalArgumentException.class, () -> new ShardDemand(0, 1, 2));
    }
}
