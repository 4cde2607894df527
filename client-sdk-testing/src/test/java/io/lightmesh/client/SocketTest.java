package io.lightmesh.client;

import io.grpc.Status;
import io.lightmesh.client.testing.FakeLightMesh;
import io.lightmesh.client.testing.FakeReply;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The client over a real TCP socket (Netty transport, HTTP/2), against the fake on a local port. */
class SocketTest {
    @Test
    void chatStreamErrorAndCancellationOverTcp() throws Exception {
        try (FakeLightMesh fake = FakeLightMesh.startOnLocalPort();
             LightMeshClient client = LightMeshClient.builder().target(fake.target()).plaintext().apiKey("k")
                     .retryPolicy(RetryPolicy.none()).defaultDeadline(Duration.ofSeconds(10)).build()) {
            fake.requireApiKey("k");
            fake.enqueue(FakeReply.text("Bonjour !").reasoning("French."));
            Completion c = client.chat(List.of(ChatMessage.user("Say hello in French")), List.of());
            assertEquals("Bonjour !", c.text());
            assertEquals("French.", c.reasoning());

            fake.enqueue(FakeReply.text("one two three"));
            assertEquals("one two three", client.stream(GenerationRequest.prompt("count").build()).toCompletion().text());

            fake.enqueue(FakeReply.error(Status.Code.RESOURCE_EXHAUSTED, "admission queue full"));
            LightMeshException e = assertThrows(LightMeshException.class, () -> client.generate(GenerationRequest.prompt("x").build()));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.code());
            assertEquals("admission queue full", e.description());

            fake.enqueue(FakeReply.text("a b c d e f").delay(Duration.ofMillis(100)));
            try (GenerationStream s = client.stream(GenerationRequest.prompt("x").build())) {
                s.next();
            }
            assertTrue(fake.awaitCancellations(1, Duration.ofSeconds(5)));
        }
    }

    @Test
    void nothingListeningIsUnavailableAfterRetries() {
        try (LightMeshClient client = LightMeshClient.builder().target("127.0.0.1:1")
                .retryPolicy(RetryPolicy.defaults().withMaxAttempts(2).withBackoff(Duration.ofMillis(1), Duration.ofMillis(1))).build()) {
            LightMeshException e = assertThrows(LightMeshException.class, client::modelInfo);
            assertEquals(Status.Code.UNAVAILABLE, e.code());
            assertEquals(2, e.attempts());
        }
    }
}
