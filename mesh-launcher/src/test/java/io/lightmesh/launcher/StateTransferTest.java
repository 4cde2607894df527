package io.lightmesh.launcher;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import io.lightmesh.decode.DecodeWorker;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateDecoder;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.Specs;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.proto.v1.AckStatus;
import io.lightmesh.proto.v1.DecodeEvent;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.lightmesh.proto.v1.DecodeRequest;
import io.lightmesh.proto.v1.GenerationSpec;
import io.lightmesh.proto.v1.LayerKind;
import io.lightmesh.proto.v1.LayerState;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.StateAck;
import io.lightmesh.proto.v1.StateChunk;
import io.lightmesh.proto.v1.StateHeader;
import io.lightmesh.proto.v1.StateTransferGrpc;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The state hand-off between a prefill worker's sender and a decode worker over a real socket: the budget is charged
 * from the header before any data arrives; a damaged, truncated or abandoned stream fails that call alone
 * (DATA_LOSS) and gives back what it held, while another sequence decodes on undisturbed; and the sender follows
 * gRPC flow control, staying within a few windows of a slow receiver instead of encoding the whole state ahead.
 */
class StateTransferTest {
    @TempDir static Path dir;
    static MeshModel model;
    static DecodeWorker worker;
    static Server server;
    static ManagedChannel channel;

    @BeforeAll
    static void start() throws Exception {
        SyntheticCheckpoint.write(dir, SyntheticCheckpoint.Shape.tiny(), DType.F32, 13, false);
        model = MeshModel.load(dir, new ReferenceOps());
        worker = new DecodeWorker(new DecodeWorker.Settings("decode-t", "127.0.0.1:0", 64L << 20, 8, 20_000), model, model.model(), false);
        server = Grpc.serve("127.0.0.1", 0, worker.services());
        channel = Grpc.channel("127.0.0.1:" + server.getPort());
    }

    @AfterAll
    static void stop() {
        Grpc.shutdown(channel);
        Grpc.shutdown(server);
        if (worker != null) worker.close();
        if (model != null) model.close();
    }

    /** A prefilled request, as a prefill worker makes it: spec, state and the first token drawn. */
    record Prefilled(GenerationSpec spec, SequenceState state, int first) {
        StateHeader.Builder header() {
            return StateHeader.newBuilder().setRequestId(spec.getRequestId()).setModelFingerprint(model.fingerprint())
                    .setNextToken(first).setSpec(spec);
        }

        List<StateChunk> chunks(int chunkBytes) {
            List<StateChunk> all = new ArrayList<>();
            StateCodec.sender(header(), state, chunkBytes).forEachRemaining(all::add);
            return all;
        }
    }

    static Prefilled prefill(String id, int[] prompt, int maxNew) {
        GenerationSpec.Builder spec = GenerationSpec.newBuilder().setRequestId(id)
                .setSampling(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(maxNew).setIgnoreEos(true));
        for (int t : prompt) spec.addPromptTokens(t);
        SequenceState s = model.model().newState();
        float[] logits = model.model().prefill(s, prompt);
        int first = Specs.resume(spec.build(), s, model.tokenizer()).accept(logits).token();
        return new Prefilled(spec.build(), s, first);
    }

    static List<Integer> expected(int[] prompt, int maxNew) {
        int[] t = Generator.generate(model.model(), model.tokenizer(), prompt, io.lightmesh.engine.generate.SamplingParams.greedy(maxNew), null).tokens();
        return Arrays.stream(t).boxed().toList();
    }

    /** Follows a request as the router does (Decode.Generate): its tokens, once it finishes. */
    static CompletableFuture<List<Integer>> follow(String id) {
        CompletableFuture<List<Integer>> done = new CompletableFuture<>();
        List<Integer> tokens = new ArrayList<>();
        DecodeGrpc.newStub(channel).withDeadlineAfter(60, TimeUnit.SECONDS).generate(DecodeRequest.newBuilder().setRequestId(id).build(),
                new StreamObserver<>() {
                    @Override public void onNext(DecodeEvent e) { tokens.addAll(e.getTokenIdsList()); }
                    @Override public void onError(Throwable t) { done.completeExceptionally(t); }
                    @Override public void onCompleted() { done.complete(tokens); }
                });
        return done;
    }

    static StateAck send(Iterator<StateChunk> chunks) {
        return StateCodec.send(StateTransferGrpc.newStub(channel), chunks, Duration.ofSeconds(30));
    }

    static Status.Code failure(Iterator<StateChunk> chunks) {
        return assertThrows(StatusRuntimeException.class, () -> send(chunks)).getStatus().getCode();
    }

    static void await(BooleanSupplier condition, String what) throws InterruptedException {
        long until = System.currentTimeMillis() + 10_000;
        while (!condition.getAsBoolean()) {
            if (System.currentTimeMillis() > until) throw new AssertionError("timed out waiting for " + what);
            Thread.sleep(10);
        }
    }

    /**
     * Issue 13: a request cancelled while its prefill task still waited for decode room was taken again by the prefill
     * worker, whose reservation was granted and held (its state then answered DUPLICATE without giving the room
     * back) until the reservation's TTL: requests sent after a burst of cancellations found the budget full.
     */
    @Test
    void aReservationForACancelledRequestHoldsNoRoom() throws Exception {
        Prefilled p = prefill("cancelled-then-reserved", new int[]{5, 9, 2}, 6);
        await(() -> worker.usedBytes() == 0, "an idle worker");
        assertTrue(!worker.cancelRequest(p.spec().getRequestId(), "client went away"), "nothing held for it yet");
        var rr = StateTransferGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS).reserve(io.lightmesh.proto.v1.ReserveRequest.newBuilder()
                .setRequestId(p.spec().getRequestId()).setBytes(1L << 20).setTtlMs(60_000).build());
        assertTrue(rr.getGranted(), rr.toString());
        assertEquals(0, worker.usedBytes(), "no room held for a cancelled request: " + rr);
        StateAck ack = send(p.chunks(4096).iterator());
        assertEquals(AckStatus.ACK_STATUS_DUPLICATE, ack.getStatus(), ack.toString());
        assertEquals(0, worker.usedBytes(), "its state refused and nothing held");
    }

    @Test
    void brokenStreamsFailAloneAndGiveBackWhatTheyHeld() throws Exception {
        int[] pa = new SplittableRandom(1).ints(45, 0, 512).toArray(), pb = new SplittableRandom(2).ints(70, 0, 512).toArray();
        Prefilled a = prefill("a", pa, 60), b = prefill("b", pb, 12);
        long chargeB = StateCodec.serialisedBytes(model.config(), pb.length + 12L);

        // a decodes while b's transfers go wrong
        CompletableFuture<List<Integer>> tokensA = follow("a");
        assertEquals(AckStatus.ACK_STATUS_ACCEPTED, send(a.chunks(1000).iterator()).getStatus());
        long base = worker.usedBytes();

        // the header alone reserves the state's room, before any data
        CompletableFuture<Throwable> ended = new CompletableFuture<>();
        StreamObserver<StateChunk> open = StateTransferGrpc.newStub(channel).send(new StreamObserver<>() {
            @Override public void onNext(StateAck ack) { ended.complete(new AssertionError("answered " + ack)); }
            @Override public void onError(Throwable t) { ended.complete(t); }
            @Override public void onCompleted() {}
        });
        List<StateChunk> good = b.chunks(1000);
        open.onNext(good.get(0));
        await(() -> worker.usedBytes() == base + chargeB || worker.liveSequences() == 0, "the header's reservation");
        if (worker.liveSequences() > 0) assertEquals(base + chargeB, worker.usedBytes(), "charged from the header");
        // ... a few chunks, then the stream ends without its trailer: DATA_LOSS, room given back
        for (StateChunk c : good.subList(1, 6)) open.onNext(c);
        open.onCompleted();
        Throwable t = ended.get(10, TimeUnit.SECONDS);
        assertEquals(Status.Code.DATA_LOSS, Status.fromThrowable(t).getCode(), String.valueOf(t));
        assertTrue(Status.fromThrowable(t).getDescription().contains("without a trailer"), Status.fromThrowable(t).getDescription());

        // a flipped bit: DATA_LOSS at the trailer's CRC
        List<StateChunk> damaged = new ArrayList<>(good);
        byte[] bytes = damaged.get(3).getData().toByteArray();
        bytes[100] ^= 4;
        damaged.set(3, StateChunk.newBuilder().setData(ByteString.copyFrom(bytes)).build());
        assertEquals(Status.Code.DATA_LOSS, failure(damaged.iterator()));
        // a chunk lost in the middle: DATA_LOSS
        List<StateChunk> gap = new ArrayList<>(good);
        gap.remove(4);
        assertEquals(Status.Code.DATA_LOSS, failure(gap.iterator()));
        // a header that lies about the size: INVALID_ARGUMENT
        List<StateChunk> lying = new ArrayList<>(good);
        lying.set(0, StateChunk.newBuilder().setHeader(good.get(0).getHeader().toBuilder().setTotalBytes(12345)).build());
        assertEquals(Status.Code.INVALID_ARGUMENT, failure(lying.iterator()));
        // the sender abandons the stream mid-way (a crash, a cancel): freed too
        Iterator<StateChunk> abandoned = new Iterator<>() {
            int i;
            @Override public boolean hasNext() { return true; }
            @Override public StateChunk next() {
                if (i == 8) throw new IllegalStateException("prefill worker gone");
                return good.get(i++);
            }
        };
        assertThrows(IllegalStateException.class, () -> send(abandoned));

        // every failure gave its room back (a may have finished meanwhile and freed its own)
        await(() -> worker.usedBytes() <= base, "the failed transfers' room");
        // the same state, sent intact, is accepted and decodes as the engine does
        CompletableFuture<List<Integer>> tokensB = follow("b");
        assertEquals(AckStatus.ACK_STATUS_ACCEPTED, send(StateCodec.sender(b.header(), b.state(), 777)).getStatus());
        assertEquals(expected(pb, 12), tokensB.get(60, TimeUnit.SECONDS));
        assertEquals(expected(pa, 60), tokensA.get(60, TimeUnit.SECONDS), "a was undisturbed");
        await(() -> worker.usedBytes() == 0 && worker.liveSequences() == 0, "everything freed");
    }

    /** A state of {@code position} tokens, zeros throughout, built through the decoder. */
    static SequenceState zeros(ModelConfig c, int position) throws Exception {
        StateDecoder d = new StateDecoder(c, position, position);
        d.decode(ByteBuffer.allocate(28).putInt(0x4c4d5353).putInt(1).putInt(c.numLayers()).putInt(c.numHeads())
                .putInt(c.headDim()).putInt(c.numKvHeads()).putInt(position).flip());
        ByteBuffer zero = ByteBuffer.allocate(1 << 16);
        for (LayerState l : StateCodec.layout(c, position)) {
            long left = l.getLength();
            if (l.getKind() == LayerKind.LAYER_KIND_SOFTMAX) {
                d.decode(ByteBuffer.allocate(4).putInt(position).flip());
                left -= 4;
            }
            for (; left > 0; left -= zero.capacity()) d.decode(zero.clear().limit((int) Math.min(left, zero.capacity())));
        }
        return d.state();
    }

    @Test
    void theSenderWaitsForASlowReceiver() throws Exception {
        ModelConfig c = model.config();
        int position = 200_000; // 256 bytes a token in the tiny model: a 49 MiB state
        SequenceState state = zeros(c, position);
        GenerationSpec spec = GenerationSpec.newBuilder().setRequestId("slow").build();
        StateCodec.Sender sender = StateCodec.sender(StateHeader.newBuilder().setRequestId("slow").setSpec(spec), state, 256 << 10);
        AtomicLong maxAhead = new AtomicLong();
        // a receiver that takes 5 ms a chunk and notes how far the sender got ahead of it
        StateTransferGrpc.StateTransferImplBase slow = new StateTransferGrpc.StateTransferImplBase() {
            @Override
            public StreamObserver<StateChunk> send(StreamObserver<StateAck> ack) {
                return new StreamObserver<>() {
                    StateCodec.Receiver r;

                    @Override
                    public void onNext(StateChunk ch) {
                        try {
                            if (ch.hasHeader()) r = new StateCodec.Receiver(ch.getHeader(), c, 0);
                            else if (ch.hasData()) {
                                r.data(ch.getData());
                                maxAhead.accumulateAndGet(sender.sentBytes() - r.received(), Math::max);
                                Thread.sleep(5);
                            } else {
                                r.finish(ch.getTrailer());
                                ack.onNext(StateAck.newBuilder().setStatus(AckStatus.ACK_STATUS_ACCEPTED).setBytesReceived(r.received()).build());
                                ack.onCompleted();
                            }
                        } catch (StatusException e) {
                            ack.onError(e);
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    }
                    @Override public void onError(Throwable t) {}
                    @Override public void onCompleted() {}
                };
            }
        };
        Server s = Grpc.serve("127.0.0.1", 0, List.of(slow));
        ManagedChannel ch = Grpc.channel("127.0.0.1:" + s.getPort());
        try {
            StateAck ack = StateCodec.send(StateTransferGrpc.newStub(ch), sender);
            assertEquals(AckStatus.ACK_STATUS_ACCEPTED, ack.getStatus(), ack.getDetail());
            assertEquals(sender.totalBytes(), ack.getBytesReceived());
            assertTrue(sender.totalBytes() > 48L << 20);
            // HTTP/2 and gRPC buffers let the sender run a few MiB ahead; without flow control it would be the whole state
            assertTrue(maxAhead.get() < 12L << 20, "sender ran " + (maxAhead.get() >> 20) + " MiB ahead of the receiver");
        } finally {
            Grpc.shutdown(ch);
            Grpc.shutdown(s);
        }
    }
}
