package io.lightmesh.router.http;

import io.lightmesh.client.LightMeshClient;
import io.lightmesh.openai.OpenAiApi;
import io.lightmesh.openai.OpenAiOptions;
import io.quarkus.runtime.ShutdownEvent;
import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;
import io.vertx.ext.web.Router;
import jakarta.enterprise.event.Observes;
import jakarta.inject.Singleton;

import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.logging.Logger;

/**
 * Serves the OpenAI-compatible API ({@code /v1/chat/completions}, {@code /v1/completions}, {@code /v1/models}) on the
 * router's HTTP server: the routes of {@link OpenAiApi}, talking to this router's own public gRPC API through the
 * client SDK, so that the HTTP path takes exactly the admission, queueing and cancellation of a gRPC client.
 * Config keys {@code lightmesh.router.openai.*} (see {@link Config}).
 */
@Singleton
public class OpenAiRoutes {
    private static final Logger LOG = Logger.getLogger(OpenAiRoutes.class.getName());

    /** Settings of the OpenAI-compatible API. */
    @ConfigMapping(prefix = "lightmesh.router.openai")
    public interface Config {
        /** Whether to serve the OpenAI-compatible API. */
        @WithDefault("true")
        boolean enabled();

        /** The router's own gRPC address, which the API calls. */
        @WithDefault("localhost:${quarkus.grpc.server.port:9000}")
        String grpcTarget();

        /** Names accepted in {@code model} besides the served model's id. */
        Optional<List<String>> modelAliases();

        /** Accept any {@code model} name (for tools that insist on their own). */
        @WithDefault("false")
        boolean acceptAnyModel();

        /** When set, HTTP requests must carry {@code Authorization: Bearer <key>}. */
        Optional<String> apiKey();

        /** Longest a request may take, retries included (an 80K-token reasoning takes a while). */
        @WithDefault("2h")
        Duration requestTimeout();

        /** Largest request body in bytes (long inputs: a million tokens is a few MB of text). */
        @WithDefault("67108864")
        long maxBodyBytes();
    }

    private final Config config;
    private volatile LightMeshClient client;

    public OpenAiRoutes(Config config) { this.config = config; }

    /** Mounts the routes on the router's HTTP server (Quarkus fires this at start-up; callable by hand too). */
    public void mount(@Observes Router router) {
        if (!config.enabled()) return;
        client = LightMeshClient.builder().target(config.grpcTarget()).plaintext().defaultDeadline(config.requestTimeout()).build();
        OpenAiApi.mount(router, client, OpenAiOptions.defaults()
                .withModelAliases(config.modelAliases().orElse(List.of()))
                .withAcceptAnyModel(config.acceptAnyModel())
                .withApiKey(config.apiKey().orElse(null))
                .withMaxBodyBytes(config.maxBodyBytes()));
        LOG.info("OpenAI-compatible API on /v1, calling the router at " + config.grpcTarget());
    }

    /** Closes the client. */
    public void stop(@Observes ShutdownEvent event) {
        LightMeshClient c = client;
        if (c != null) c.close();
    }
}
