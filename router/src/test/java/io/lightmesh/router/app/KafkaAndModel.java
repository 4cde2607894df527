package io.lightmesh.router.app;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.FreePort;
import io.lightmesh.mesh.TestKafka;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;

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
    static final int GRPC_PORT = FreePort.next();
    private TestKafka kafka;
    private Path dir;

    @Override
    public Map<String, String> start() {
        try {
            dir = Files.createTempDirectory("lightmesh-router-test");
            Path model = dir.resolve("tiny");
            SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Shape(2048, 64, 8, 4, 2, 16, 8, 4, 2, 48, 16), DType.F32, 21, false);
            Path fixtures = Path.of("../engine/src/test/resources/fixtures/tokenizer");
            for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) Files.copy(fixtures.resolve(f), model.resolve(f));
            kafka = new TestKafka(1).start();
            return Map.of("lightmesh.model", model.toString(), "lightmesh.kafka", kafka.bootstrapServers(),
                    "lightmesh.decode", "127.0.0.1:" + FreePort.next(), "lightmesh.grpc-port", "" + GRPC_PORT,
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
}
