package io.lightmesh.client.examples;

import io.lightmesh.client.ChatMessage;
import io.lightmesh.client.Completion;
import io.lightmesh.client.Delta;
import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.GenerationStream;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.client.LightMeshException;
import io.lightmesh.client.ModelInfo;
import io.lightmesh.client.Tool;
import io.lightmesh.client.ToolCall;
import io.lightmesh.client.testing.FakeLightMesh;
import io.lightmesh.client.testing.FakeReply;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * The client SDK end to end: model info, a streamed chat with a thinking budget (reasoning shown apart from the
 * answer), and a tool-call round trip.
 *
 * <pre>
 * scripts/sdk-example localhost:9000     # a running LightMesh router (its gRPC port)
 * scripts/sdk-example --fake             # no server: the SDK's fake, scripted like a model
 * </pre>
 */
public final class ChatExample {
    private ChatExample() {}

    private static final Tool WEATHER = Tool.function("get_weather", "Current weather in a city",
            "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}");

    /**
     * Runs the example.
     *
     * @param args the router's {@code host:port}, or {@code --fake}
     */
    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: ChatExample <host:port> | --fake");
            System.exit(2);
        }
        FakeLightMesh fake = args[0].equals("--fake") ? scriptedFake() : null;
        LightMeshClient.Builder builder = fake != null ? fake.clientBuilder() : LightMeshClient.builder().target(args[0]).plaintext();
        try (LightMeshClient client = builder.defaultDeadline(Duration.ofMinutes(10)).build()) {
            run(client);
        } catch (LightMeshException e) {
            System.err.println("failed: " + e.getMessage() + " (after " + e.attempts() + " attempt(s))");
            System.exit(1);
        } finally {
            if (fake != null) fake.close();
        }
    }

    static void run(LightMeshClient client) {
        ModelInfo info = client.modelInfo();
        System.out.printf("model %s (%s, %d layers, %s mode)%n", info.modelId(), info.modelType(), info.numLayers(), info.servingMode());

        // 1. A streamed chat: reasoning first (cut at the budget), then the answer.
        // a short answer: a small thinking budget and room for a few sentences (a real M1 takes ThinkingBudget.M1_40K)
        GenerationRequest question = GenerationRequest.chat(ChatMessage.user("Is 1001 a prime number? Answer in one sentence."))
                .maxThinkingTokens(256).maxTokens(384).temperature(1.0).topP(0.95).build();
        try (GenerationStream stream = client.stream(question)) {
            boolean answering = false;
            for (Delta d : stream) {
                if (!d.reasoning().isEmpty()) System.out.print("\u001b[2m" + d.reasoning() + "\u001b[0m");
                if (!d.text().isEmpty()) {
                    if (!answering) System.out.print("\n--- answer ---\n");
                    answering = true;
                    System.out.print(d.text());
                }
                if (d.isLast()) {
                    System.out.printf("%n[%s, %d tokens of which %d reasoning]%n", d.finishReason(), d.usage().completionTokens(),
                            d.usage().reasoningTokens());
                }
            }
        }

        // 2. Tools: the model asks for get_weather, we run it, and send the result back.
        List<ChatMessage> chat = new ArrayList<>(List.of(ChatMessage.user("What's the weather in Paris?")));
        Completion turn = client.chat(chat, List.of(WEATHER));
        while (turn.hasToolCalls()) {
            chat.add(ChatMessage.assistant(turn));
            for (ToolCall call : turn.toolCalls()) {
                System.out.println("tool call: " + call.name() + " " + call.argumentsJson());
                chat.add(ChatMessage.toolResult(call, getWeather(call.argumentsJson())));
            }
            turn = client.chat(chat, List.of(WEATHER));
        }
        System.out.println("answer: " + turn.text());
    }

    /** The "tool": a real one would call a weather service. */
    private static String getWeather(String argumentsJson) {
        return "{\"sky\":\"sunny\",\"celsius\":21,\"query\":" + argumentsJson + "}";
    }

    /** A fake server scripted to answer like the model would. */
    private static FakeLightMesh scriptedFake() {
        FakeLightMesh fake = FakeLightMesh.start();
        fake.enqueue(FakeReply.text("No: 1001 = 7 x 11 x 13.")
                        .reasoning("1001 is odd; 1001 / 7 = 143, and 143 = 11 x 13. So it is composite.")
                        .delay(Duration.ofMillis(20)),
                FakeReply.text("").reasoning("I need the weather tool.").toolCall("get_weather", "{\"city\":\"Paris\"}"),
                FakeReply.text("It is sunny and 21 degrees in Paris."));
        return fake;
    }
}
