package io.lightmesh.prefill;

import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.PrefillTask;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.MockConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * How a prefill worker takes batches from the request topic and settles their offsets, on Kafka's MockConsumer (the
 * worker against a real broker: mesh-launcher's PrefillBatchTest and MeshEndToEndTest).
 */
class RequestTopicTest {
    private static final TopicPartition P0 = new TopicPartition("requests", 0), P1 = new TopicPartition("requests", 1);

    private MockConsumer<String, byte[]> consumer;

    @BeforeEach
    void assign() {
        consumer = new MockConsumer<>("earliest");
        consumer.assign(List.of(P0, P1));
        consumer.updateBeginningOffsets(Map.of(P0, 0L, P1, 0L));
    }

    /** A record of a request of {@code tokens} prompt tokens at the next offset of {@code tp}. */
    private void add(TopicPartition tp, long offset, int tokens) {
        GenerationSpec spec = GenerationSpec.newBuilder().setRequestId(tp.partition() + "-" + offset)
                .addAllPromptTokens(IntStream.range(0, tokens).boxed().toList()).build();
        consumer.addRecord(new ConsumerRecord<>(tp.topic(), tp.partition(), offset, "k", PrefillTask.newBuilder().setSpec(spec).build().toByteArray()));
    }

    private List<Long> offsets(List<PrefillJob> batch) { return batch.stream().map(j -> j.record.offset()).toList(); }

    @Test
    void aBatchTakesRecordsWhileTheirContextsFitAndLeavesTheRestOnTheTopic() {
        RequestTopic topic = new RequestTopic(consumer, 2048, 8);
        add(P0, 0, 1000);
        add(P0, 1, 800);
        add(P0, 2, 500); // 2300 > 2048
        add(P0, 3, 10);
        List<PrefillJob> batch = topic.poll(Duration.ZERO);
        assertEquals(List.of(0L, 1L), offsets(batch));
        assertEquals(1800, batch.stream().mapToInt(PrefillJob::tokens).sum());
        assertEquals(2, consumer.position(P0), "sought back to the first record left out");
        assertTrue(batch.stream().allMatch(PrefillJob::open));
    }

    @Test
    void aContextLongerThanTheBudgetMakesABatchOfItsOwn() {
        RequestTopic topic = new RequestTopic(consumer, 100, 8);
        add(P0, 0, 500);
        add(P0, 1, 5);
        assertEquals(List.of(0L), offsets(topic.poll(Duration.ZERO)));
        assertEquals(1, consumer.position(P0), "the rest left for the next poll (MockConsumer does not fetch it again)");
    }

    @Test
    void aBatchHoldsAtMostBatchMaxRecords() {
        RequestTopic topic = new RequestTopic(consumer, 2048, 2);
        for (int i = 0; i < 5; i++) add(P0, i, 1);
        assertEquals(List.of(0L, 1L), offsets(topic.poll(Duration.ZERO)));
        assertEquals(2, consumer.position(P0));
    }

    @Test
    void anUnreadableRecordIsAJobWithoutATaskAndNoTokens() {
        RequestTopic topic = new RequestTopic(consumer, 2048, 8);
        consumer.addRecord(new ConsumerRecord<>(P0.topic(), 0, 0, "k", new byte[]{(byte) 0xff, 0x01}));
        List<PrefillJob> batch = topic.poll(Duration.ZERO);
        assertEquals(1, batch.size());
        assertNull(batch.getFirst().task);
        assertEquals(0, batch.getFirst().tokens());
    }

    @Test
    void nothingPolledIsAnEmptyBatch() {
        assertTrue(new RequestTopic(consumer, 2048, 8).poll(Duration.ZERO).isEmpty());
    }

    @Test
    void settlingCommitsEachPartitionUpToItsFirstRecordToRetryAndSeeksBackToIt() {
        RequestTopic topic = new RequestTopic(consumer, 2048, 8);
        for (int i = 0; i < 3; i++) add(P0, i, 1);
        for (int i = 0; i < 2; i++) add(P1, i, 1);
        List<PrefillJob> batch = topic.poll(Duration.ZERO);
        assertEquals(5, batch.size());
        for (PrefillJob j : batch) j.commit = true;
        batch.stream().filter(j -> j.tp.equals(P0) && j.record.offset() == 1).forEach(j -> j.commit = false); // decode full
        assertTrue(topic.settle(batch), "a record to take again");
        Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(Set.of(P0, P1));
        assertEquals(1, committed.get(P0).offset(), "P0 committed up to its record to retry, not past it");
        assertEquals(2, committed.get(P1).offset(), "P1 committed whole");
        assertEquals(1, consumer.position(P0), "P0 sought back to the record to retry (the one after it comes again too)");
        assertEquals(2, consumer.position(P1));
    }

    @Test
    void aBatchAllShippedIsCommittedWithNothingToRetry() {
        RequestTopic topic = new RequestTopic(consumer, 2048, 8);
        for (int i = 0; i < 3; i++) add(P0, i, 1);
        List<PrefillJob> batch = topic.poll(Duration.ZERO);
        for (PrefillJob j : batch) j.commit = true;
        assertFalse(topic.settle(batch));
        assertEquals(3, consumer.committed(Set.of(P0)).get(P0).offset());
    }
}
