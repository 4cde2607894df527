package io.lightmesh.prefill;

import io.lightmesh.proto.v1.PrefillTask;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.StickyAssignor;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.logging.Logger;

/**
 * A prefill worker's side of the request topic: one member of the consumer group, taking a batch of records per poll
 * (those fetched, in order, while their contexts fit the token budget; the rest sought back to, so that a worker takes
 * work only when idle) and settling each batch (committing each partition up to its last record in an unbroken run of
 * finished ones, seeking back to the first one to retry). Used by the prefill loop's thread alone, except
 * {@link #lag} and {@link #wakeup}.
 */
final class RequestTopic {
    private static final Logger LOG = Logger.getLogger(RequestTopic.class.getName());

    private final Consumer<String, byte[]> consumer;
    private final int batchTokens, batchMax;

    /** @param consumer subscribed to the request topic, offsets committed by this class alone */
    RequestTopic(Consumer<String, byte[]> consumer, int batchTokens, int batchMax) {
        this.consumer = consumer;
        this.batchTokens = batchTokens;
        this.batchMax = batchMax;
    }

    /** The group member of a prefill worker, subscribed to {@code topic}. */
    static RequestTopic subscribe(PrefillWorker.Settings settings) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, settings.bootstrapServers());
        p.put(ConsumerConfig.GROUP_ID_CONFIG, settings.groupId());
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, settings.workerId());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, String.valueOf(settings.batchMax()));
        // a killed or frozen member's partitions (and their uncommitted records) go to another member once its heartbeats
        // (every 3 s, from the consumer's own thread, not the prefill loop) stop for this long: 10 s rather than 45 s
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "3000");
        // sticky: a rebalance moves as few partitions as it can, so a conversation's key keeps reaching the worker
        // whose prefix cache holds it (a partition that moves costs its conversations one cache miss, not an error)
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, StickyAssignor.class.getName());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        io.lightmesh.mesh.KafkaBackoff.quietRebootstrapLog();
        KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(io.lightmesh.mesh.KafkaBackoff.client(p));
        consumer.subscribe(List.of(settings.topic()));
        return new RequestTopic(consumer, settings.batchTokens(), settings.batchMax());
    }

    /** The next batch: empty when nothing came within {@code timeout}. */
    List<PrefillJob> poll(Duration timeout) {
        ConsumerRecords<String, byte[]> records = consumer.poll(timeout);
        return records.isEmpty() ? List.of() : take(records);
    }

    /**
     * The batch of a poll: records in order while their contexts fit the token budget (the first always does);
     * each partition's first record left out, and everything after it, is sought back to, for the next poll.
     */
    List<PrefillJob> take(ConsumerRecords<String, byte[]> records) {
        List<PrefillJob> batch = new ArrayList<>();
        long tokens = 0;
        for (TopicPartition tp : records.partitions()) {
            for (ConsumerRecord<String, byte[]> r : records.records(tp)) {
                PrefillTask task;
                try {
                    task = PrefillTask.parseFrom(r.value());
                } catch (Exception e) {
                    LOG.warning("dropping unreadable record at " + r.topic() + "-" + r.partition() + "@" + r.offset() + ": " + e);
                    task = null;
                }
                PrefillJob j = new PrefillJob(r, task);
                if (!batch.isEmpty() && (tokens + j.tokens() > batchTokens || batch.size() >= batchMax)) {
                    consumer.seek(tp, r.offset());
                    break;
                }
                batch.add(j);
                tokens += j.tokens();
            }
        }
        return batch;
    }

    /**
     * Commits each partition up to its last record in an unbroken run of finished ones; a record to retry (not
     * shipped: decode full or unreachable) is sought back to, with what follows it. Commits are asynchronous: were
     * this worker to die before one lands, the record would be redelivered and dropped as a duplicate.
     *
     * @return whether a record is to be taken again (the caller pauses before the next poll)
     */
    boolean settle(List<PrefillJob> batch) {
        Map<TopicPartition, OffsetAndMetadata> commits = new HashMap<>();
        Set<TopicPartition> retry = new HashSet<>();
        for (PrefillJob j : batch) { // per partition in offset order
            if (retry.contains(j.tp)) continue;
            if (Boolean.TRUE.equals(j.commit)) {
                commits.put(j.tp, new OffsetAndMetadata(j.record.offset() + 1));
            } else {
                consumer.seek(j.tp, j.record.offset());
                retry.add(j.tp);
            }
        }
        if (!commits.isEmpty()) {
            consumer.commitAsync(commits, (offsets, err) -> {
                if (err != null) LOG.warning("commit of " + offsets + " failed: " + err);
            });
        }
        return !retry.isEmpty();
    }

    /**
     * The consumer's lag on its assigned partitions: the sum of its per-partition {@code records-lag} metrics (the
     * consumer's metrics are safe to read from another thread; NaN before a partition's first fetch counts 0).
     */
    long lag() {
        long sum = 0;
        for (var e : consumer.metrics().entrySet()) {
            if (!e.getKey().name().equals("records-lag") || !e.getKey().tags().containsKey("partition")) continue;
            Object v = e.getValue().metricValue();
            if (v instanceof Double d && Double.isFinite(d) && d > 0) sum += d.longValue();
        }
        return sum;
    }

    /** Makes a blocked {@link #poll} throw WakeupException (from any thread): how the worker is stopped. */
    void wakeup() { consumer.wakeup(); }

    /** Leaves the group at once, committing nothing: uncommitted work goes to another member. */
    void close() { consumer.close(CloseOptions.timeout(Duration.ZERO)); }
}
