package io.lightmesh.router.app;

import io.lightmesh.mesh.DeferredServices;
import io.lightmesh.proto.v1.ComponentHealth;
import io.lightmesh.proto.v1.HealthResponse;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Provider;
import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.HealthCheckResponseBuilder;
import org.eclipse.microprofile.health.Readiness;

import java.util.function.Predicate;

/**
 * Readiness ({@code GET /q/health/ready}) from the router's own view of the mesh ({@link io.lightmesh.router.RouterCore#health()},
 * the checks the launcher's HTTP port makes): UP only when Kafka, a prefill worker (a member of the consumer group),
 * a decode worker and shards for every (layer, expert) are reachable. One check per part, each component's address
 * and detail in its data.
 */
@ApplicationScoped
public class RouterHealth {

    private final DeferredServices services;
    private final Provider<RouterNode> node;

    RouterHealth(DeferredServices services, Provider<RouterNode> node) {
        this.services = services;
        this.node = node;
    }

    @Produces @Readiness
    HealthCheck kafka() { return () -> check("kafka", c -> c.getName().equals("kafka"), false); }

    @Produces @Readiness
    HealthCheck prefill() { return () -> check("prefill", c -> c.getName().equals("prefill"), false); }

    @Produces @Readiness
    HealthCheck decode() { return () -> check("decode", c -> c.getName().startsWith("decode/"), true); }

    /** UP with no shards configured: the workers then run the experts in-process. */
    @Produces @Readiness
    HealthCheck experts() { return () -> check("experts", c -> c.getName().startsWith("expert"), false); }

    /**
     * DOWN while the placement controller stands by for a later-started one over the same shards (found by the
     * heartbeats the shards report: several routers running one, a misconfiguration, or the old pod of a rolling
     * update), or has lately seen a placement version it did not issue; UP without a controller.
     */
    @Produces @Readiness
    HealthCheck placement() {
        return () -> {
            HealthCheckResponseBuilder b = HealthCheckResponse.named("placement");
            if (!services.ready()) return b.down().withData("router", "starting").build();
            var c = node.get().placement();
            if (c == null) return b.up().withData("controller", "off").build();
            String conflict = c.conflict();
            return conflict == null ? b.up().withData("controller", "on").build() : b.down().withData("conflict", conflict).build();
        };
    }

    /**
     * @param any the part is UP when any of its components is reachable (decode workers); otherwise when all are
     */
    private HealthCheckResponse check(String part, Predicate<ComponentHealth> mine, boolean any) {
        HealthCheckResponseBuilder b = HealthCheckResponse.named(part);
        if (!services.ready()) return b.down().withData("router", "starting").build();
        HealthResponse h = node.get().core().health();
        boolean up = !any, seen = false;
        for (ComponentHealth c : h.getComponentsList()) {
            if (!mine.test(c)) continue;
            seen = true;
            up = any ? up || c.getReachable() : up && c.getReachable();
            String where = c.getAddress().isEmpty() ? "" : c.getAddress() + ": ";
            b.withData(c.getName(), (c.getReachable() ? "UP " : "DOWN ") + where + c.getDetail());
        }
        return b.status(seen ? up : !any).build();
    }
}
