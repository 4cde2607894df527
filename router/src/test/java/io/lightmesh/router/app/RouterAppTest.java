package io.lightmesh.router.app;

import io.grpc.ManagedChannel;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.TokenizeResponse;
import io.quarkus.test.common.WithTestResource;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import org.junit.jupiter.api.Test;

import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The router application in Quarkus's test harness, with Kafka and a model but no workers: readiness is DOWN and
 * says which parts are missing, liveness is UP, the OpenAI API is mounted on the HTTP port and reaches the router's
 * gRPC API (model list, validation, and UNAVAILABLE without a decode worker), and the gRPC API serves Tokenize;
 * both APIs want the API key (lightmesh.api-key), gRPC Health and /q/health stay open.
 */
@QuarkusTest
@WithTestResource(KafkaAndModel.class)
class RouterAppTest {
    @TestHTTPResource("/")
    URL base;

    private final HttpClient http = HttpClient.newHttpClient();

    private HttpResponse<String> get(String path) throws Exception {
        return http.send(HttpRequest.newBuilder(base.toURI().resolve(path)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private HttpResponse<String> post(String path, String json) throws Exception {
        return http.send(HttpRequest.newBuilder(base.toURI().resolve(path)).header("Content-Type", "application/json")
                .header("Authorization", "Bearer " + KafkaAndModel.API_KEY)
                .POST(HttpRequest.BodyPublishers.ofString(json)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private HttpResponse<String> getWithKey(String path, String key) throws Exception {
        return http.send(HttpRequest.newBuilder(base.toURI().resolve(path)).header("Authorization", "Bearer " + key).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void readinessIsDownAndNamesTheMissingWorkers() throws Exception {
        HttpResponse<String> r = null;
        long until = System.currentTimeMillis() + 20_000;
        while (System.currentTimeMillis() < until) {  // until the router has polled Kafka once
            r = get("/q/health/ready");
            if (r.body().contains("\"name\":\"kafka\",\"status\":\"UP\"")) break;
            Thread.sleep(200);
        }
        String body = r.body().replace(" ", "").replace("\n", "");
        assertEquals(503, r.statusCode(), body);
        assertTrue(body.contains("\"name\":\"kafka\",\"status\":\"UP\""), body);
        assertTrue(body.contains("\"name\":\"prefill\",\"status\":\"DOWN\""), body);
        assertTrue(body.contains("\"name\":\"decode\",\"status\":\"DOWN\""), body);
        assertTrue(body.contains("\"name\":\"experts\",\"status\":\"UP\""), body);
        assertTrue(body.contains("\"name\":\"placement\",\"status\":\"UP\""), "no controller here, so no conflict: " + body);
        assertEquals(200, get("/q/health/live").statusCode());
    }

    @Test
    void theOpenAiApiIsMountedAndReachesTheGrpcApi() throws Exception {
        assertEquals(401, get("/v1/models").statusCode(), "no API key");
        assertEquals(401, getWithKey("/v1/models", "wrong").statusCode(), "a wrong API key");
        HttpResponse<String> models = getWithKey("/v1/models", KafkaAndModel.API_KEY);
        assertEquals(200, models.statusCode(), models.body());
        assertTrue(models.body().contains("\"id\":\"tiny\""), models.body());

        HttpResponse<String> invalid = post("/v1/completions", "{\"model\": \"tiny\", \"max_tokens\": 4}");
        assertEquals(400, invalid.statusCode(), invalid.body());
        assertTrue(invalid.body().contains("prompt"), invalid.body());

        HttpResponse<String> noWorker = post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": \"Hello\", \"max_tokens\": 4}");
        assertEquals(503, noWorker.statusCode(), noWorker.body());
        assertTrue(noWorker.body().contains("decode"), noWorker.body());
    }

    @Test
    void adminPlacementWantsTheKeyAndSaysThereIsNoControllerWithoutExpertShards() throws Exception {
        assertEquals(401, get("/admin/placement").statusCode(), "no API key");
        assertEquals(401, getWithKey("/admin/placement", "wrong").statusCode(), "a wrong API key");
        HttpResponse<String> r = getWithKey("/admin/placement", KafkaAndModel.API_KEY);
        assertEquals(404, r.statusCode(), r.body());
        assertTrue(r.body().contains("no expert placement controller"), r.body());
        // the Placement service is bound, and says why it is not there
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + KafkaAndModel.GRPC_PORT);
        try {
            var e = org.junit.jupiter.api.Assertions.assertThrows(io.grpc.StatusRuntimeException.class,
                    () -> io.lightmesh.proto.v1.PlacementGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                            .reportUnreachable(io.lightmesh.proto.v1.UnreachableReport.newBuilder().setShardId("x").build()));
            // not UNAVAILABLE (which a worker would retry until its wait ran out): a misconfiguration, named
            assertEquals(io.grpc.Status.Code.FAILED_PRECONDITION, e.getStatus().getCode());
            assertTrue(e.getStatus().getDescription().contains("runs no expert placement controller")
                    && e.getStatus().getDescription().contains("no expert shards (lightmesh.experts)"), e.getStatus().toString());
        } finally {
            Grpc.shutdown(ch);
        }
    }

    @Test
    void theGrpcApiWantsTheApiKeyAndServesTokenize() {
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + KafkaAndModel.GRPC_PORT);
        try {
            var stub = InferenceGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS);
            var refused = org.junit.jupiter.api.Assertions.assertThrows(io.grpc.StatusRuntimeException.class,
                    () -> stub.tokenize(TokenizeRequest.newBuilder().setText("Hello world").build()));
            assertEquals(io.grpc.Status.Code.UNAUTHENTICATED, refused.getStatus().getCode());
            stub.health(io.lightmesh.proto.v1.HealthRequest.getDefaultInstance()); // open without a key, for probes
            io.grpc.Metadata auth = new io.grpc.Metadata();
            auth.put(io.grpc.Metadata.Key.of("authorization", io.grpc.Metadata.ASCII_STRING_MARSHALLER), "Bearer " + KafkaAndModel.API_KEY);
            TokenizeResponse t = stub.withInterceptors(io.grpc.stub.MetadataUtils.newAttachHeadersInterceptor(auth))
                    .tokenize(TokenizeRequest.newBuilder().setText("Hello world").build());
            assertTrue(t.getIdsCount() > 0, t.toString());
            assertEquals(t.getIdsCount(), t.getCount());
        } finally {
            Grpc.shutdown(ch);
        }
    }

    @Test
    void requestsOverAConfiguredLimitAreAnswered400NamingIt() throws Exception {
        // lightmesh.max-tools=2 and lightmesh.max-new-tokens=1000 (KafkaAndModel): refused before any worker is asked
        String tool = "{\"type\": \"function\", \"function\": {\"name\": \"f\"}}";
        HttpResponse<String> tools = post("/v1/chat/completions", "{\"model\": \"tiny\", \"messages\": [{\"role\": \"user\", "
                + "\"content\": \"hi\"}], \"tools\": [" + tool + ", " + tool + ", " + tool + "]}");
        assertEquals(400, tools.statusCode(), tools.body());
        assertTrue(tools.body().contains("lightmesh.max-tools"), tools.body());
        HttpResponse<String> tokens = post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": \"Hello\", \"max_tokens\": 1001}");
        assertEquals(400, tokens.statusCode(), tokens.body());
        assertTrue(tokens.body().contains("at most 1000 (lightmesh.max-new-tokens)"), tokens.body());
    }
}
