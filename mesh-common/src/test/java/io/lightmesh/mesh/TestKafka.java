package io.lightmesh.mesh;

import org.apache.kafka.common.test.KafkaClusterTestKit;
import org.apache.kafka.common.test.TestKitNodes;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * A real Kafka broker for the tests of a class: KafkaClusterTestKit's one combined KRaft node in the test JVM (ready
 * in ~2.5 s, ~100 MB heap), set for a single broker (replication factors 1, no rebalance delay) with
 * {@code offsetsPartitions} partitions of the consumer offsets topic. As a JUnit 5 extension,
 * {@code @RegisterExtension static final TestKafka kafka = new TestKafka(4);} starts it before the class's
 * {@code @BeforeAll} methods and stops it after its {@code @AfterAll} methods, so what a class runs on it is stopped
 * first; {@link #start} and {@link #close} where JUnit does not own the lifecycle (a Quarkus test resource).
 */
public final class TestKafka implements BeforeAllCallback, AfterAllCallback, AutoCloseable {
    private final int offsetsPartitions;
    private KafkaClusterTestKit kit;

    public TestKafka(int offsetsPartitions) {
        this.offsetsPartitions = offsetsPartitions;
    }

    /** Formats and starts the broker; returns once it serves. */
    public TestKafka start() throws Exception {
        if (kit != null) throw new IllegalStateException("the broker is already started");
        kit = new KafkaClusterTestKit.Builder(new TestKitNodes.Builder().setCombined(true).setNumBrokerNodes(1).setNumControllerNodes(1).build())
                .setConfigProp("group.initial.rebalance.delay.ms", "0")
                .setConfigProp("offsets.topic.replication.factor", "1")
                .setConfigProp("offsets.topic.num.partitions", "" + offsetsPartitions)
                .setConfigProp("transaction.state.log.replication.factor", "1")
                .setConfigProp("transaction.state.log.min.isr", "1").build();
        kit.format();
        kit.startup();
        kit.waitForReadyBrokers();
        return this;
    }

    /** The broker's address list, as clients' bootstrap.servers. */
    public String bootstrapServers() {
        if (kit == null) throw new IllegalStateException("the broker is not started");
        return kit.bootstrapServers();
    }

    /**
     * Stops the broker (its controller keeps running) as a restart would: its listener closes, its clients lose their
     * connections. {@link #startBroker} brings it back on the same port.
     */
    public void stopBroker() {
        if (kit == null) throw new IllegalStateException("the broker is not started");
        for (var b : kit.brokers().values()) b.shutdown();
    }

    /** Starts the broker stopped by {@link #stopBroker} again, on the same port; returns once it serves. */
    public void startBroker() throws Exception {
        if (kit == null) throw new IllegalStateException("the broker is not started");
        for (var b : kit.brokers().values()) b.startup();
        kit.waitForReadyBrokers();
    }

    /** Stops the broker and removes its files; nothing where it never started. */
    @Override
    public void close() throws Exception {
        if (kit != null) kit.close();
        kit = null;
    }

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
        start();
    }

    @Override
    public void afterAll(ExtensionContext context) throws Exception {
        close();
    }
}
