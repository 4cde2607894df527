package io.lightmesh.router;

import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.KafkaBackoff;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.proto.v1.ComponentHealth;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A broker restart as the router's Kafka clients live through it, on a real broker (KafkaClusterTestKit in this JVM)
 * stopped for {@link #DOWN_MS} and started again on its port: the router's producer and admin client (its health
 * polls every 300 ms, as in the chaos runs) and a producer and a consumer set up as the mesh's ({@link KafkaBackoff}).
 * After the restart the router's readiness sees Kafka again and a record sent then reaches the consumer within
 * {@link #RECOVERY_MS}, and the lines the clients log about lost and retried connections (Kafka's "Rebootstrapping
 * with", "disconnected", "could not be established"; captured through java.util.logging, where the router's tests
 * route Kafka's SLF4J logging, at the levels that would print) stay under {@link #MAX_LINES} for the whole restart.
 * Measured on the 2-core box (2026-12-03): 124 lines, recovered 3.6 s after the broker's start; with Kafka's default
 * backoffs 279 lines (recovered 1.2 s); with the backoffs but the rebootstrap line left at INFO ~700 in a 12 s restart,
 * the admin client's share in a tight loop.
 */
class KafkaRestartTest {
    static final long DOWN_MS = 20_000, RECOVERY_MS = 25_000;
    static final int MAX_LINES = 180;
    static final String TOPIC = "lightmesh.requests.v1";

    @RegisterExtension static final TestKafka kafka = new TestKafka(1);
    @TempDir Path dir;

    /** Counts the Kafka clients' log records about lost and retried connections. */
    static final class ReconnectLines extends Handler {
        final Map<String, Integer> byMessage = new ConcurrentHashMap<>();

        @Override public void publish(LogRecord r) {
            String m = r.getMessage();
            if (m == null || r.getLevel().intValue() < Level.INFO.intValue() || !r.getLoggerName().startsWith("org.apache.kafka.clients")) return;
            for (String kind : new String[]{"Rebootstrapping", "disconnected", "could not be established"}) {
                if (m.contains(kind)) {
                    byMessage.merge(r.getLevel() + " " + kind + " (" + Thread.currentThread().getName().replaceAll("[0-9]+", "") + ")", 1, Integer::sum);
                    return;
                }
            }
        }

        int total() { return byMessage.values().stream().mapToInt(Integer::intValue).sum(); }
        @Override public void flush() {}
        @Override public void close() {}
    }

    static void await(String what, long ms, BooleanSupplier cond) throws InterruptedException {
        long until = System.currentTimeMillis() + ms;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > until) throw new AssertionError("not within " + ms + " ms: " + what);
            Thread.sleep(50);
        }
    }

    static boolean kafkaReachable(RouterCore core) {
        return core.health().getComponentsList().stream().filter(c -> c.getName().equals("kafka")).anyMatch(ComponentHealth::getReachable);
    }

    @Test
    void aBrokerRestartCostsAFewReconnectLinesAndTheClientsRecoverWithinTheBound() throws Exception {
        Path model = dir.resolve("tiny");
        SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Shape(2048, 64, 8, 4, 2, 16, 8, 4, 2, 48, 16), DType.F32, 21, false);
        Path fixtures = Path.of("../engine/src/test/resources/fixtures/tokenizer");
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) Files.copy(fixtures.resolve(f), model.resolve(f));
        Properties pp = KafkaBackoff.client(new Properties());
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        Properties cp = KafkaBackoff.client(new Properties());
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, "lightmesh-prefill");
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "3000");
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        Set<String> received = ConcurrentHashMap.newKeySet();
        AtomicBoolean polling = new AtomicBoolean(true);
        ReconnectLines lines = new ReconnectLines();
        Logger kafkaLog = Logger.getLogger("org.apache.kafka");
        RouterCore.Settings s = new RouterCore.Settings(kafka.bootstrapServers(), TOPIC, 2, "lightmesh-prefill", List.of(), List.of(),
                16, 16, 1024, 2, 300);
        try (MeshModel m = MeshModel.load(model, new ReferenceOps());
             RouterCore core = new RouterCore(s, m);
             KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            Thread consumer = Thread.ofPlatform().name("test-consumer").start(() -> {
                try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
                    c.subscribe(List.of(TOPIC));
                    while (polling.get()) for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) received.add(r.value());
                }
            });
            try {
                await("the router sees Kafka", 30_000, () -> kafkaReachable(core));
                producer.send(new ProducerRecord<>(TOPIC, "k", "before")).get(30, TimeUnit.SECONDS);
                await("the consumer gets a record", 60_000, () -> received.contains("before"));

                kafkaLog.addHandler(lines);
                kafka.stopBroker();
                long down = System.currentTimeMillis();
                await("the router sees Kafka gone", DOWN_MS, () -> !kafkaReachable(core));
                Thread.sleep(Math.max(0, down + DOWN_MS - System.currentTimeMillis()));
                kafka.startBroker();
                long up = System.currentTimeMillis();
                producer.send(new ProducerRecord<>(TOPIC, "k", "after")).get(RECOVERY_MS, TimeUnit.MILLISECONDS);
                await("the consumer gets a record sent after the restart", RECOVERY_MS, () -> received.contains("after"));
                await("the router sees Kafka again", RECOVERY_MS, () -> kafkaReachable(core));
                long recovered = System.currentTimeMillis() - up;
                kafkaLog.removeHandler(lines);
                System.out.println("KafkaRestartTest: broker down " + DOWN_MS + " ms; recovered " + recovered + " ms after its start; "
                        + lines.total() + " reconnect lines " + lines.byMessage);
                assertTrue(recovered <= RECOVERY_MS, "recovered in " + recovered + " ms");
                assertTrue(lines.total() <= MAX_LINES, lines.total() + " reconnect lines for one restart: " + lines.byMessage);
            } finally {
                kafkaLog.removeHandler(lines);
                polling.set(false);
                consumer.join(15_000);
            }
        }
    }
}
