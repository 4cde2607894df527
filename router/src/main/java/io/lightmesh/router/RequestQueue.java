package io.lightmesh.router;

import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.proto.v1.PrefillTask;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * The request topic, the router's side: prefill tasks published keyed by conversation (so a conversation keeps
 * reaching the prefill worker whose prefix cache holds it), each in the trace of its request ("lightmesh.queue
 * publish", whose context travels in the record's headers).
 */
final class RequestQueue implements AutoCloseable {
    private final String topic;
    private final Tracer tracer;
    private final KafkaProducer<String, byte[]> producer;

    RequestQueue(String bootstrapServers, String topic, Tracer tracer) {
        this.topic = topic;
        this.tracer = tracer;
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        // send() blocks the calling (gRPC) thread while the topic's metadata is unknown (the broker restarting) or the
        // buffer is full: at most this long (a restart must fit in it), then the request fails with UNAVAILABLE naming
        // Kafka; a record buffered while the broker is away is retried until delivery.timeout.ms (120 s), then the same
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        io.lightmesh.mesh.KafkaBackoff.quietRebootstrapLog();
        producer = new KafkaProducer<>(io.lightmesh.mesh.KafkaBackoff.client(p));
    }

    /** Creates the request topic when missing (replication 1 on a one-broker cluster, else 3 at most). */
    static void ensureTopic(Admin admin, String topic, int partitions) {
        try {
            int brokers = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS).size();
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) Math.min(3, brokers)))).all().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) throw new IllegalStateException("cannot create topic " + topic + ": " + e.getCause(), e.getCause());
        } catch (Exception e) {
            throw new IllegalStateException("cannot create topic " + topic + ": " + e, e);
        }
    }

    /**
     * Publishes an attempt's task under {@code conversation}, as a child of {@code trace}; {@code failed} is told
     * (on the producer's thread) when Kafka did not take it.
     */
    void publish(PrefillTask task, String conversation, Context trace, Consumer<Exception> failed) {
        Span publish = tracer.spanBuilder("lightmesh.queue publish").setSpanKind(SpanKind.PRODUCER)
                .setAttribute("messaging.system", "kafka").setAttribute("messaging.destination.name", topic)
                .setAttribute("lightmesh.attempt", task.getAttempt()).startSpan();
        ProducerRecord<String, byte[]> record = new ProducerRecord<>(topic, conversation, task.toByteArray());
        MeshTelemetry.inject(trace.with(publish), record.headers()); // the prefill worker continues this trace
        producer.send(record, (meta, err) -> {
            if (err != null) publish.setStatus(StatusCode.ERROR, String.valueOf(err));
            publish.end();
            if (err != null) failed.accept(err);
        });
    }

    @Override
    public void close() { producer.close(Duration.ofSeconds(2)); }
}
