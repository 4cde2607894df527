package io.lightmesh.openai;

import io.lightmesh.client.LightMeshClient;
import io.lightmesh.client.testing.FakeLightMesh;
import io.lightmesh.client.testing.FakeReply;
import io.lightmesh.proto.v1.ChatMessage;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.Role;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.ext.web.Router;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The OpenAI-compatible API as a process of its own, in front of any LightMesh gRPC server (the router serves the
 * same routes itself on its HTTP port). With {@code --fake} it fronts the SDK's fake server, scripted to answer like
 * a reasoning model that calls tools: for trying OpenAI clients without a model.
 *
 * <pre>
 * scripts/openai-server localhost:9000 [--port 8000] [--api-key KEY]
 * scripts/openai-server --fake [--port 8000]
 * </pre>
 */
public final class OpenAiServer {
    private OpenAiServer() {}

    /**
     * Runs the server until the process is stopped.
     *
     * @param args the gRPC target or {@code --fake}, then {@code --port N}, {@code --host H}, {@code --api-key K}
     */
    public static void main(String[] args) throws Exception {
        String target = null;
        String host = "127.0.0.1";
        int port = 8000; // not serve's 8080: both can run at once
        String apiKey = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--port" -> port = Integer.parseInt(args[++i]);
                case "--host" -> host = args[++i];
                case "--api-key" -> apiKey = args[++i];
                default -> {
                    if (target != null || args[i].startsWith("--") && !args[i].equals("--fake")) usage();
                    target = args[i];
                }
            }
        }
        if (target == null) usage();
        FakeLightMesh fake = target.equals("--fake") ? FakeLightMesh.start().respondWith(OpenAiServer::modelLike) : null;
        LightMeshClient client = fake != null ? fake.client() : LightMeshClient.builder().target(target).plaintext().build();
        Vertx vertx = Vertx.vertx();
        Router router = Router.router(vertx);
        OpenAiApi.mount(router, client, OpenAiOptions.defaults().withApiKey(apiKey));
        HttpServer server = vertx.createHttpServer().requestHandler(router).listen(port, host).toCompletionStage()
                .toCompletableFuture().get(30, TimeUnit.SECONDS);
        System.err.println("OpenAI-compatible API on http://" + host + ":" + server.actualPort() + "/v1, in front of "
                + (fake != null ? "a fake LightMesh (model minimax-m1-fake)" : target));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            vertx.close();
            if (fake != null) fake.close();
            else client.close();
            stopped.countDown();
        }));
        stopped.await();
    }

    private static void usage() {
        System.err.println("usage: OpenAiServer (<grpc host:port> | --fake) [--host H] [--port N] [--api-key KEY]");
        System.exit(2);
    }

    /**
     * The fake's answers: a call of the first tool offered while no tool result came back, an answer after a tool
     * result, else a short reasoning and an echo of the user's last message.
     */
    static FakeReply modelLike(GenerateRequest r) {
        if (!r.hasChat()) return FakeReply.text(" and so on.");
        var chat = r.getChat();
        ChatMessage last = chat.getMessages(chat.getMessagesCount() - 1);
        if (last.getRole() == Role.ROLE_TOOL) {
            return FakeReply.text("The tool " + last.getName() + " says: " + last.getContent()).reasoning("The tool answered.");
        }
        if (chat.getToolsCount() > 0) {
            return FakeReply.text("").reasoning("I should call " + chat.getTools(0).getName() + ".")
                    .toolCall(chat.getTools(0).getName(), "{\"city\":\"Paris\"}");
        }
        return FakeReply.text("You said: " + last.getContent()).reasoning("The user said something; I will echo it.");
    }
}
