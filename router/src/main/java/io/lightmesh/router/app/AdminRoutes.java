package io.lightmesh.router.app;

import io.lightmesh.router.placement.AdminPlacementRoute;
import io.lightmesh.router.placement.PlacementController;
import io.vertx.ext.web.Router;
import jakarta.enterprise.event.Observes;
import jakarta.inject.Singleton;

/** {@code GET /admin/placement} on Quarkus's HTTP server (behind lightmesh.api-key when set). */
@Singleton
public class AdminRoutes {
    void mount(@Observes Router router, RouterConfig config, RouterNode node) {
        PlacementController c = node.placement();
        AdminPlacementRoute.mount(router, c == null ? null : c::view, config.apiKey().orElse(null));
    }
}
