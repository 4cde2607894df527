package io.lightmesh.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.grpc.Status;
import io.lightmesh.client.Completion;
import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.client.LightMeshException;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code serve --api-key}: the embedded mesh's public gRPC API ends calls without the right key UNAUTHENTICATED,
 * its HTTP API answers 401, and both serve a caller with the key; health stays open for probes.
 */
class ServeApiKeyTest {
    static final String KEY = "sk-test-0123456789";
    @TempDir static Path dir;
    static EmbeddedMesh mesh;
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        SyntheticCheckpoint.write(model, SyntheticCheckpoint.Shape.tiny(), DType.F32, 5, false);
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, 0, null, null, 0, 1, 1,
                1L << 28, 8, "lightmesh.requests.v1", 8, 8);
        mesh = EmbeddedMesh.start(o, null, s -> OpenTelemetry.noop(), EmbeddedMesh.ShardSetup.roundRobin(), KEY);
        assertTrue(mesh.awaitReady(120_000), "mesh not ready: " + mesh.router().health());
    }

    @AfterAll
    static void stop() {
        if (mesh != null) mesh.close();
    }

    static LightMeshClient client(String key) {
        return LightMeshClient.builder().target(mesh.routerTarget()).plaintext().apiKey(key)
                .defaultDeadline(Duration.ofSeconds(60)).build();
    }

    static GenerationRequest twoTokens() { return GenerationRequest.tokens(List.of(3, 4, 5)).maxTokens(2).build(); }

    @Test
    void grpcWithoutOrWithAWrongKeyIsUnauthenticated() {
        for (String key : new String[]{null, "sk-wrong"}) {
            try (LightMeshClient c = client(key)) {
                LightMeshException e = assertThrows(LightMeshException.class, () -> c.generate(twoTokens()));
                assertEquals(Status.Code.UNAUTHENTICATED, e.code(), "key " + key + ": " + e.description());
            }
        }
    }

    @Test
    void grpcWithTheKeyGenerates() {
        try (LightMeshClient c = client(KEY)) {
            Completion done = c.generate(twoTokens());
            assertEquals(2, done.usage().completionTokens(), done.toString());
        }
    }

    @Test
    void grpcHealthStaysOpen() {
        try (LightMeshClient c = client(null)) {
            c.health(); // throws when refused
        }
    }

    static HttpResponse<String> get(String path, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + mesh.httpPort() + path)).timeout(Duration.ofSeconds(60));
        if (key != null) b.header("Authorization", "Bearer " + key);
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void httpWithoutOrWithAWrongKeyIs401() throws Exception {
        for (String key : new String[]{null, "sk-wrong"}) {
            HttpResponse<String> r = get("/v1/models", key);
            assertEquals(401, r.statusCode(), "key " + key + ": " + r.body());
            JsonNode error = new ObjectMapper().readTree(r.body()).get("error");
            assertTrue(error != null && !error.get("message").asText().isEmpty(), r.body());
        }
    }

    @Test
    void httpWithTheKeyServesAndHealthStaysOpen() throws Exception {
        HttpResponse<String> models = get("/v1/models", KEY);
        assertEquals(200, models.statusCode(), models.body());
        String model = new ObjectMapper().readTree(models.body()).get("data").get(0).get("id").asText();
        HttpRequest post = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + mesh.httpPort() + "/v1/completions"))
                .timeout(Duration.ofSeconds(60)).header("Authorization", "Bearer " + KEY).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"" + model + "\",\"prompt\":[3,4,5],\"max_tokens\":2}")).build();
        HttpResponse<String> done = HTTP.send(post, HttpResponse.BodyHandlers.ofString());
        assertEquals(200, done.statusCode(), done.body());
        assertEquals(2, new ObjectMapper().readTree(done.body()).get("usage").get("completion_tokens").asInt(), done.body());
        assertEquals(200, get("/q/health/ready", null).statusCode());
        assertEquals(200, get("/q/health/live", null).statusCode());
    }
}
