package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.stub.StreamObserver;
import io.lightmesh.decode.DecodeWorker;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.prefill.PrefillWorker;
import io.lightmesh.proto.v1.DecodeEvent;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.lightmesh.proto.v1.DecodeRequest;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.PrefillTask;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.router.RouterCore;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Batched prefill in the worker: requests already queued on the topic (one partition, a duplicated record among
 * them) are taken by one poll, prefilled through shared forward steps within the token budget, each state shipped
 * to the decode worker; every request's greedy tokens equal the engine's Generator, the duplicate is dropped, and
 * every offset is committed once the states were acknowledged.
 */
class PrefillBatchTest {
    static final String TOPIC = "lightmesh.requests.batch";
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(1);
    static MeshModel model;
    static DecodeWorker decode;
    static Server decodeServer;
    static ManagedChannel channel;

    @BeforeAll
    static void start() throws Exception {
        SyntheticCheckpoint.write(dir.resolve("model"), SyntheticCheckpoint.Shape.tiny(), DType.F32, 29, false);
        model = MeshModel.load(dir.resolve("model"), new ReferenceOps());
        decode = new DecodeWorker(new DecodeWorker.Settings("decode-b", "127.0.0.1:0", 256L << 20, 16, 60_000), model, model.model(), false);
        decodeServer = Grpc.serve("127.0.0.1", 0, decode.services());
        channel = Grpc.channel("127.0.0.1:" + decodeServer.getPort());
    }

    @AfterAll
    static void stop() throws Exception {
        Grpc.shutdown(channel);
        Grpc.shutdown(decodeServer);
        if (decode != null) decode.close();
        if (model != null) model.close();
    }

    static CompletableFuture<List<Integer>> follow(String id) {
        CompletableFuture<List<Integer>> done = new CompletableFuture<>();
        List<Integer> tokens = new ArrayList<>();
        DecodeGrpc.newStub(channel).withDeadlineAfter(120, TimeUnit.SECONDS).generate(DecodeRequest.newBuilder().setRequestId(id).build(),
                new StreamObserver<>() {
                    @Override public void onNext(DecodeEvent e) { tokens.addAll(e.getTokenIdsList()); }
                    @Override public void onError(Throwable t) { done.completeExceptionally(t); }
                    @Override public void onCompleted() { done.complete(tokens); }
                });
        return done;
    }

    @Test
    void queuedRequestsArePrefilledTogetherAndEachDecodesAsTheEngine() throws Exception {
        int[] lengths = {3, 40, 17, 150, 1};
        List<int[]> prompts = new ArrayList<>();
        List<CompletableFuture<List<Integer>>> followers = new ArrayList<>();
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()))) {
            RouterCore.ensureTopic(admin, TOPIC, 1);
        }
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        String target = "127.0.0.1:" + decodeServer.getPort();
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < lengths.length; i++) {
                int[] prompt = new SplittableRandom(100 + i).ints(lengths[i], 0, 512).toArray();
                prompts.add(prompt);
                GenerationSpec.Builder spec = GenerationSpec.newBuilder().setRequestId("req-" + i)
                        .setSampling(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(6).setIgnoreEos(true));
                for (int t : prompt) spec.addPromptTokens(t);
                PrefillTask task = PrefillTask.newBuilder().setSpec(spec).setConversationId("c-" + i).setDecodeTarget(target).build();
                followers.add(follow("req-" + i));
                producer.send(new ProducerRecord<>(TOPIC, "c-" + i, task.toByteArray())).get();
                if (i == 1) producer.send(new ProducerRecord<>(TOPIC, "c-" + i, task.toByteArray())).get(); // delivered twice
            }
        }
        PrefillWorker worker = new PrefillWorker(new PrefillWorker.Settings("prefill-b", kafka.bootstrapServers(), TOPIC, "batch-group",
                1000, 30_000, 50, 4096, 8), model, model.model());
        try {
            for (int i = 0; i < lengths.length; i++) {
                int[] t = Generator.generate(model.model(), model.tokenizer(), prompts.get(i),
                        io.lightmesh.engine.generate.SamplingParams.greedy(6), null).tokens();
                assertEquals(Arrays.stream(t).boxed().toList(), followers.get(i).get(120, TimeUnit.SECONDS), "request " + i);
            }
            assertEquals(5, worker.prefilled.sum(), "five states shipped: the duplicate was dropped");
            assertEquals(1, worker.batches.sum(), "the six queued records were taken as one batch: one forward pass");
            assertEquals(5, worker.largestBatch.get(), "five requests in it (the duplicate is not prefilled)");
            try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()))) {
                TopicPartition tp = new TopicPartition(TOPIC, 0);
                long until = System.currentTimeMillis() + 10_000;
                long committed = -1;
                while (committed != 6 && System.currentTimeMillis() < until) {
                    OffsetAndMetadata o = admin.listConsumerGroupOffsets("batch-group").partitionsToOffsetAndMetadata().get().get(tp);
                    committed = o == null ? -1 : o.offset();
                    Thread.sleep(50);
                }
                assertEquals(6, committed, "every record committed");
            }
        } finally {
            worker.close();
        }
        long until = System.currentTimeMillis() + 10_000;
        while ((decode.usedBytes() != 0 || decode.liveSequences() != 0) && System.currentTimeMillis() < until) Thread.sleep(20);
        assertEquals(0, decode.usedBytes(), "every state freed");
        assertTrue(decode.liveSequences() == 0);
    }
}
