package io.lightmesh.mesh;

import io.quarkus.runtime.ShutdownEvent;
import io.vertx.core.buffer.Buffer;
import io.vertx.ext.web.Router;
import jakarta.enterprise.event.Observes;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Singleton;
import org.eclipse.microprofile.config.inject.ConfigProperty;

/**
 * Quarkus glue (used only inside the services' Quarkus applications, which index this module): one {@link MeshMetrics}
 * per application, named after {@code quarkus.application.name}, and {@code GET /q/metrics} on the HTTP port in
 * Prometheus's text format. The nodes record on it through {@link MeshMetrics#withTracing}.
 */
@Singleton
public class MetricsRoute {
    private MeshMetrics metrics;

    @Produces
    @Singleton
    MeshMetrics metrics(@ConfigProperty(name = "quarkus.application.name") String service) {
        metrics = MeshMetrics.fromEnvironment(service);
        return metrics;
    }

    void mount(@Observes Router router, MeshMetrics m) {
        router.get("/q/metrics").handler(ctx -> {
            byte[] body = m.scrape().getBytes(java.nio.charset.StandardCharsets.UTF_8);
            ctx.response().putHeader("content-type", MeshMetrics.CONTENT_TYPE).end(Buffer.buffer(body));
        });
    }

    void stop(@Observes ShutdownEvent e) {
        if (metrics != null) metrics.close();
    }
}
