package io.lightmesh.launcher;

import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.router.placement.PlacementController;
import io.lightmesh.router.placement.PlacementView;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code --autoscale-experts 2:4} in the embedded mesh: under load the controller starts a third in-process shard,
 * which joins the placement and computes; when the load stops it drains one (placement without it published,
 * grace, then stopped) and goes back to 2. The target utilisation is set very low (1%) so that the tiny model's
 * load, which keeps a real shard mostly idle, still asks for more shards; the rest is as in production, with
 * intervals scaled down.
 */
class ExpertAutoscaleTest {
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    @RegisterExtension static final TestMesh running = new TestMesh();
    static EmbeddedMesh mesh;

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        SkewedCheckpoint.write(model, ElasticExpertPoolTest.HOT, 0.5);
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, 0, kafka.bootstrapServers(), dir, 2, 1, 1,
                1L << 30, 32, "lightmesh.requests.v1", 64, 32);
        mesh = running.ready(EmbeddedMesh.start(o, new EmbeddedMesh.ExpertPool(-1, 2, 4, 200, 2000, 1.25, 300, 0.01), s -> OpenTelemetry.noop()));
        ElasticExpertPoolTest.client = InferenceGrpc.newBlockingStub(running.channel());
        ElasticExpertPoolTest.mesh = mesh;
        ElasticExpertPoolTest.cases = GreedyCases.seeded(mesh.model().model(), 200, 6, 10, 7, 12);
    }

    @Test
    void aShardIsAddedUnderLoadAndRemovedWhenIdle() throws Exception {
        PlacementController c = mesh.placementController();
        ElasticExpertPoolTest.await("first placement", 10_000, () -> c.view().version() > 0);
        assertEquals(2, c.view().shards().size());
        try (ElasticExpertPoolTest.Load load = new ElasticExpertPoolTest.Load(4)) {
            ElasticExpertPoolTest.await("scaled up", 30_000, () -> c.view().shards().size() >= 3);
            PlacementView v = c.view();
            assertTrue(v.desiredShards() >= 3 && v.desiredShards() <= 4, "desired " + v.desiredShards());
            String added = v.shards().stream().map(PlacementView.ShardView::id).filter(id -> !id.equals("expert-0") && !id.equals("expert-1"))
                    .findFirst().orElseThrow();
            assertTrue(v.shards().stream().filter(s -> s.id().equals(added)).findFirst().orElseThrow().experts().size() > 0, "the new shard got experts");
            int at = load.done.get();
            ElasticExpertPoolTest.await("answers with the new shard", 20_000, () -> load.done.get() >= at + 8);
            assertTrue(mesh.experts().stream().anyMatch(e -> e.id().equals(added) && e.worker().info().getTokensComputed() > 0),
                    "the new shard computed expert rows");
        }
        assertTrue(c.view().shards().size() <= 4);
        ElasticExpertPoolTest.await("scaled down when idle", 30_000, () -> c.view().shards().size() == 2 && mesh.experts().size() == 2);
        assertEquals(2, c.view().desiredShards());
        for (PlacementView.ExpertView e : c.view().experts()) assertTrue(!e.replicas().isEmpty(), "every expert placed after the drain");
        // still serving, with the same answers
        try (ElasticExpertPoolTest.Load load = new ElasticExpertPoolTest.Load(2)) {
            ElasticExpertPoolTest.await("answers after the drain", 20_000, () -> load.done.get() >= 4);
        }
    }
}
