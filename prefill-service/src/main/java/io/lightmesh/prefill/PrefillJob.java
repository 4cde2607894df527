package io.lightmesh.prefill;

import com.google.common.util.concurrent.ListenableFuture;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.proto.v1.PrefillTask;
import io.lightmesh.proto.v1.ReserveResponse;
import io.lightmesh.proto.v1.TokenLogprob;
import io.opentelemetry.api.trace.Span;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;

import java.util.List;

/** One record of a prefill batch, and what became of it: its task, reservation, prefilled state, and the verdict. */
final class PrefillJob {
    final ConsumerRecord<String, byte[]> record;
    final TopicPartition tp;
    final PrefillTask task;   // null: unreadable
    Span span;
    String key;               // request id # attempt
    int[] context;
    ListenableFuture<ReserveResponse> reservation;
    long queueUs, prefillUs;  // prefillUs: the batch's forward pass
    SequenceState state;
    float[] logits;
    List<TokenLogprob> promptLogprobs = List.of(); // when the spec asks for them
    int cachedTokens;         // context tokens restored from the prefix cache
    Boolean commit;           // null while the job is still being worked on; then whether its offset may be committed

    PrefillJob(ConsumerRecord<String, byte[]> record, PrefillTask task) {
        this.record = record;
        this.tp = new TopicPartition(record.topic(), record.partition());
        this.task = task;
    }

    /** Tokens of context it prefills (prompt and, on a resume, those generated before). */
    int tokens() { return task == null ? 0 : task.getSpec().getPromptTokensCount() + task.getSpec().getGeneratedTokensCount(); }

    boolean open() { return commit == null; }
}
