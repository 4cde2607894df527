package io.lightmesh.router.app;

import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.PeerSet;
import io.lightmesh.router.placement.PlacementController;
import io.lightmesh.router.placement.ShardDemand;
import io.opentelemetry.api.OpenTelemetry;
import org.jboss.logging.Logger;

import java.util.List;

/** The router app's expert placement controller, from the lightmesh.* keys (RouterConfig). */
final class PlacementNode {
    private static final Logger LOG = Logger.getLogger(PlacementNode.class);

    /** How a router without a controller answers Placement calls (the start of the description; workers look for it). */
    static final String NO_CONTROLLER = "this router runs no expert placement controller: ";

    private PlacementNode() {}

    /**
     * Started over {@code shards} (the router's {@code lightmesh.experts}, fixed or discovered: asked at every poll, so
     * shards that join or leave are followed); null when none are configured (experts in the workers) or
     * lightmesh.placement-controller is false.
     */
    static PlacementController start(RouterConfig config, PeerSet shards, MeshModel model, OpenTelemetry otel) {
        if (config.experts().orElse(List.of()).isEmpty() || !config.placementController()) return null;
        int[] range = config.autoscaleExperts().map(ShardDemand::parseRange).orElse(new int[]{1, Integer.MAX_VALUE});
        PlacementController.Settings d = PlacementController.Settings.defaults();
        PlacementController.Settings s = new PlacementController.Settings(d.pollMs(), Math.round(config.rebalanceIntervalS() * 1000),
                config.imbalanceThreshold(), config.expertSlots().orElse(-1), d.drainGraceMs(), d.rpcTimeoutMs(),
                new ShardDemand(config.expertTargetUtilisation(), range[0], range[1]),
                new PlacementController.Liveness(config.placementDescribeMs(), config.placementDescribeMaxMs(), config.placementMissesToDrop()));
        PlacementController c = new PlacementController(s, model.config().numLayers(), model.config().numExperts(), model.fingerprint(),
                shards, null, otel.getMeter(MeshTelemetry.SCOPE)).start();
        LOG.infof("router: expert placement controller over %s (window %.0f s, threshold %.2f, spare slots %s, Describe within %d ms, up to %d ms when slow, %d misses)",
                shards.describe(), config.rebalanceIntervalS(), config.imbalanceThreshold(), config.expertSlots().map(String::valueOf).orElse("2 per layer"),
                config.placementDescribeMs(), config.placementDescribeMaxMs(), config.placementMissesToDrop());
        return c;
    }
}
