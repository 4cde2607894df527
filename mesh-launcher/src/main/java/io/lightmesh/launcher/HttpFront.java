package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.openai.OpenAiApi;
import io.lightmesh.openai.OpenAiOptions;
import io.lightmesh.proto.v1.HealthResponse;
import io.lightmesh.proto.v1.ServingStatus;
import io.lightmesh.router.placement.AdminPlacementRoute;
import io.lightmesh.router.placement.PlacementView;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.net.PemKeyCertOptions;
import io.vertx.ext.web.Router;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * The router's HTTP port: {@code GET /q/health/ready} and {@code /q/health/live} (MicroProfile Health's shape) and
 * the OpenAI-compatible API ({@code /v1/...}), which reaches the router's own public gRPC API through the client
 * SDK, so HTTP and gRPC clients get exactly the same validation, admission and generation.
 */
final class HttpFront implements AutoCloseable {
    private final Vertx vertx;
    private final HttpServer server;
    private final LightMeshClient client;
    private final ManagedChannel channel;

    private HttpFront(Vertx vertx, HttpServer server, LightMeshClient client, ManagedChannel channel) {
        this.vertx = vertx;
        this.server = server;
        this.client = client;
        this.channel = channel;
    }

    /**
     * @param grpcTarget the router's gRPC address, which the OpenAI API calls
     * @param health     the router's current health (readiness is UP only when it is SERVING)
     */
    static HttpFront start(String host, int port, String grpcTarget, Supplier<HealthResponse> health,
                           OpenAiOptions options) throws Exception {
        return start(host, port, grpcTarget, health, options, null);
    }

    /** @param placement the expert placement controller's view for GET /admin/placement; null: none (404) */
    static HttpFront start(String host, int port, String grpcTarget, Supplier<HealthResponse> health,
                           OpenAiOptions options, Supplier<PlacementView> placement) throws Exception {
        Vertx vertx = Vertx.vertx();
        // the OpenAI API checks the key itself, then calls the router's gRPC API with it (which checks it too), over the
        // mesh's own channel: mutual TLS when the mesh has it
        ManagedChannel channel = Grpc.channel(grpcTarget);
        LightMeshClient client = LightMeshClient.builder().channel(channel).apiKey(options.apiKey())
                .defaultDeadline(Duration.ofHours(2)).build();
        try {
            Router router = Router.router(vertx);
            router.get("/q/health/ready").blockingHandler(ctx -> {
                HealthResponse h = health.get();
                boolean up = h.getStatus() == ServingStatus.SERVING_STATUS_SERVING;
                ctx.response().setStatusCode(up ? 200 : 503).putHeader("Content-Type", "application/json")
                        .end(EmbeddedMesh.healthJson(h, up));
            });
            router.get("/q/health/live").handler(ctx -> ctx.response().putHeader("Content-Type", "application/json")
                    .end("{\"status\":\"UP\",\"checks\":[]}"));
            AdminPlacementRoute.mount(router, placement, options.apiKey());
            OpenAiApi.mount(router, client, options);
            // HTTPS with the router's certificate when the mesh has TLS
            HttpServerOptions http = new HttpServerOptions();
            Grpc.tls().ifPresent(t -> http.setSsl(true).setKeyCertOptions(new PemKeyCertOptions()
                    .setCertPath(t.cert().toString()).setKeyPath(t.key().toString())));
            HttpServer server = vertx.createHttpServer(http).requestHandler(router).listen(port, host)
                    .toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
            return new HttpFront(vertx, server, client, channel);
        } catch (Exception e) {
            client.close();
            Grpc.shutdown(channel);
            vertx.close();
            throw e;
        }
    }

    int port() { return server.actualPort(); }

    @Override
    public void close() {
        try {
            server.close().toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
        } catch (Exception ignored) {
            // shutting down anyway
        }
        client.close();
        Grpc.shutdown(channel);
        vertx.close();
    }
}
