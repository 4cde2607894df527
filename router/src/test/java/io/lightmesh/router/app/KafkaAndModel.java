package io.lightmesh.router.app;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import org.apache.kafka.common.test.KafkaClusterTestKit;
import org.apache.kafka.common.test.TestKitNodes;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * What the router application needs to start in a test: a real Kafka broker (KRaft, in this JVM) and a small model
 * of the M1 architecture with the fixture tokenizer. No decode worker, prefill worker or shard runs, so the router
 * must report itself not ready.
 */
public class KafkaAndModel implements QuarkusTestResourceLifecycleManager {
    /** The router runs with an API key: the HTTP and gRPC APIs both want it, health stays open. */
    static final String API_KEY = "lm-app-test-key";
    static final int GRPC_PORT = freePort();
    private KafkaClusterTestKit kafka;
    private Path dir;

    @Override
    public Map<String, String> start() {
        try {
            dir = Files.createTempDirectory("lightmesh-router-test");
            Path model = dir.resolve("tiny");
            SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Shape(2048, 64, 8, 4, 2, 16, 8, 4, 2, 48, 16), DType.F32, 21, false);
            Path fixtures = Path.of("../engine/src/test/resources/fixtures/tokenizer");
            for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) Files.copy(fixtures.resolve(f), model.resolve(f));
            kafka = new KafkaClusterTestKit.Builder(new TestKitNodes.Builder().setCombined(true).setNumBrokerNodes(1)
                    .setNumControllerNodes(1).build())
                    .setConfigProp("offsets.topic.replication.factor", "1").setConfigProp("offsets.topic.num.partitions", "1").build();
            kafka.format();
            kafka.startup();
            kafka.waitForReadyBrokers();
            return Map.of("lightmesh.model", model.toString(), "lightmesh.kafka", kafka.bootstrapServers(),
                    "lightmesh.decode", "127.0.0.1:" + freePort(), "lightmesh.grpc-port", "" + GRPC_PORT,
                    "lightmesh.host", "127.0.0.1", "lightmesh.poll-ms", "200", "lightmesh.partitions", "2",
                    "lightmesh.api-key", API_KEY, "lightmesh.max-tools", "2", "lightmesh.max-new-tokens", "1000");
        } catch (Exception e) {
            throw new IllegalStateException("cannot start Kafka for the router test: " + e, e);
        }
    }

    @Override
    public void stop() {
        try {
            if (kafka != null) kafka.close();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static int freePort() {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
