package io.lightmesh.router.app;

import io.grpc.ManagedChannel;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.openai.OpenAiApi;
import io.lightmesh.openai.OpenAiOptions;
import io.quarkus.runtime.ShutdownEvent;
import io.vertx.ext.web.Router;
import jakarta.enterprise.event.Observes;
import jakarta.inject.Singleton;

import java.time.Duration;

/**
 * The OpenAI-compatible API (/v1/...) on Quarkus's HTTP server: openai-api's Vert.x Web routes, calling this
 * router's own gRPC API through the client SDK, so HTTP and gRPC requests get the same validation, admission and
 * generation.
 */
@Singleton
public class OpenAiRoutes {
    private LightMeshClient client;
    private ManagedChannel channel;

    void mount(@Observes Router router, RouterConfig config) {
        // this process's own gRPC API, reached over loopback when it listens on every interface
        String host = config.host().equals("0.0.0.0") || config.host().equals("::") ? "127.0.0.1" : config.host();
        // with an API key the gRPC API checks it too (ApiKeyCheck): the HTTP API, having checked the caller's, passes it on
        // over the mesh's own channel: mutual TLS when the mesh has it (MeshTls)
        channel = Grpc.channel(host + ":" + config.grpcPort());
        client = LightMeshClient.builder().channel(channel).apiKey(config.apiKey().orElse(null))
                .defaultDeadline(Duration.ofHours(2)).build();
        OpenAiApi.mount(router, client, OpenAiOptions.defaults().withApiKey(config.apiKey().orElse(null)));
    }

    void stop(@Observes ShutdownEvent e) {
        if (client != null) client.close();
        Grpc.shutdown(channel);
    }
}
