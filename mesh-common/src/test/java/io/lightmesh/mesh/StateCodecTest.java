package io.lightmesh.mesh;

import com.google.protobuf.ByteString;
import io.grpc.Status;
import io.grpc.StatusException;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateDecoder;
import io.lightmesh.engine.model.StateEncoder;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.proto.v1.StateChunk;
import io.lightmesh.proto.v1.StateHeader;
import io.lightmesh.proto.v1.StateTrailer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The state hand-off codec chunk by chunk: {@link StateCodec.Sender} to {@link StateCodec.Receiver} for chunk sizes
 * that split floats and layers, damaged and truncated streams refused with DATA_LOSS, protocol violations with
 * INVALID_ARGUMENT, and a state over 2 GiB shipped with a heap that only holds the two states (no serialised copy).
 */
class StateCodecTest {
    @TempDir static Path dir;
    static MiniMaxModel model;
    static SequenceState state;

    @BeforeAll
    static void load() throws Exception {
        SyntheticCheckpoint.write(dir, SyntheticCheckpoint.Shape.tiny(), DType.F32, 3, false);
        model = MiniMaxModel.load(dir, new ReferenceOps());
        state = model.newState();
        model.prefill(state, new SplittableRandom(4).ints(41, 0, 512).toArray());
    }

    @AfterAll
    static void close() { model.close(); }

    static StateHeader.Builder header() { return StateHeader.newBuilder().setRequestId("r-1").setModelFingerprint("fp"); }

    static List<StateChunk> send(SequenceState s, int chunkBytes) {
        List<StateChunk> out = new ArrayList<>();
        StateCodec.sender(header(), s, chunkBytes).forEachRemaining(out::add);
        return out;
    }

    /** Feeds a Send stream to a receiver, as the decode worker does. */
    static SequenceState receive(List<StateChunk> stream, ModelConfig c) throws StatusException {
        StateCodec.Receiver r = new StateCodec.Receiver(stream.get(0).getHeader(), c, 0);
        for (StateChunk ch : stream.subList(1, stream.size())) {
            switch (ch.getPartCase()) {
                case DATA -> r.data(ch.getData());
                case TRAILER -> { return r.finish(ch.getTrailer()); }
                default -> throw new AssertionError(ch.getPartCase());
            }
        }
        throw r.truncated();
    }

    static byte[] bytes(SequenceState s) {
        StateEncoder e = s.encoder();
        ByteBuffer b = ByteBuffer.allocate((int) e.totalBytes());
        e.encode(b);
        return b.array();
    }

    static Status.Code code(StatusException e) { return e.getStatus().getCode(); }

    @Test
    void roundTripChunkByChunk() throws Exception {
        byte[] expected = bytes(state);
        int lightningLayer = 4 * 16 * 16 * 4;
        for (int chunk : new int[]{1, 3, 7, 1001, lightningLayer - 2, lightningLayer + 5, StateCodec.DEFAULT_CHUNK_BYTES}) {
            List<StateChunk> stream = send(state, chunk);
            StateHeader h = stream.get(0).getHeader();
            assertEquals(StateCodec.ENCODING, h.getEncoding());
            assertEquals(expected.length, h.getTotalBytes());
            assertEquals(state.position(), h.getPosition());
            assertEquals(StateCodec.layout(model.config(), state.position()), h.getLayersList());
            int chunks = (expected.length + chunk - 1) / chunk;
            assertEquals(chunks + 2, stream.size(), "header, data, trailer");
            CRC32C crc = new CRC32C();
            crc.update(expected);
            StateTrailer t = stream.getLast().getTrailer();
            assertEquals((int) crc.getValue(), t.getCrc32C());
            assertEquals(chunks, t.getChunks());
            SequenceState back = receive(stream, model.config());
            assertArrayEquals(expected, bytes(back), "chunks of " + chunk);
            assertArrayEquals(model.decode(List.of(copy(state)), new int[]{9})[0], model.decode(List.of(back), new int[]{9})[0]);
        }
    }

    static SequenceState copy(SequenceState s) throws IOException {
        StateDecoder d = new StateDecoder(s.config(), s.position(), s.position());
        d.decode(ByteBuffer.wrap(bytes(s)));
        return d.state();
    }

    /** A stream with data chunk {@code i} (0-based among data chunks) replaced. */
    static List<StateChunk> withData(List<StateChunk> stream, int i, ByteString data) {
        List<StateChunk> out = new ArrayList<>(stream);
        out.set(1 + i, StateChunk.newBuilder().setData(data).build());
        return out;
    }

    @Test
    void corruptionIsDataLoss() {
        List<StateChunk> stream = send(state, 1000);
        // a flipped bit in a float: only the CRC can tell, at the trailer
        byte[] b = stream.get(3).getData().toByteArray();
        b[517] ^= 0x10;
        StatusException e = assertThrows(StatusException.class, () -> receive(withData(stream, 2, ByteString.copyFrom(b)), model.config()));
        assertEquals(Status.Code.DATA_LOSS, code(e));
        assertTrue(e.getStatus().getDescription().contains("crc32c mismatch"), e.getStatus().getDescription());
        // a flipped bit in a softmax layer's KV length: caught when it arrives
        int at = 28 + 7 * 4 * 16 * 16 * 4 + 3;
        byte[] k = stream.get(1 + at / 1000).getData().toByteArray();
        k[at % 1000] ^= 1;
        e = assertThrows(StatusException.class, () -> receive(withData(stream, at / 1000, ByteString.copyFrom(k)), model.config()));
        assertEquals(Status.Code.DATA_LOSS, code(e));
        assertTrue(e.getStatus().getDescription().contains("KV length"), e.getStatus().getDescription());
    }

    @Test
    void truncationIsDataLoss() {
        List<StateChunk> stream = send(state, 1000);
        // the last data chunk missing, trailer intact
        List<StateChunk> lost = new ArrayList<>(stream);
        lost.remove(stream.size() - 2);
        StatusException e = assertThrows(StatusException.class, () -> receive(lost, model.config()));
        assertEquals(Status.Code.DATA_LOSS, code(e));
        assertTrue(e.getStatus().getDescription().contains("size mismatch"), e.getStatus().getDescription());
        // one in the middle missing: what follows lands in the wrong place (here a KV length field catches it)
        List<StateChunk> gap = new ArrayList<>(stream);
        gap.remove(5);
        e = assertThrows(StatusException.class, () -> receive(gap, model.config()));
        assertEquals(Status.Code.DATA_LOSS, code(e));
        // the stream ends before its trailer
        e = assertThrows(StatusException.class, () -> receive(stream.subList(0, stream.size() - 3), model.config()));
        assertEquals(Status.Code.DATA_LOSS, code(e));
        assertTrue(e.getStatus().getDescription().contains("without a trailer"), e.getStatus().getDescription());
        // a chunk cut short, the rest shifted: the count in the trailer and the CRC disagree
        List<StateChunk> shortChunk = withData(stream, 0, stream.get(1).getData().substring(0, 999));
        e = assertThrows(StatusException.class, () -> receive(shortChunk, model.config()));
        assertEquals(Status.Code.DATA_LOSS, code(e));
    }

    @Test
    void protocolViolationsAreInvalidArgument() {
        List<StateChunk> stream = send(state, 1000);
        StateHeader h = stream.get(0).getHeader();
        for (StateHeader bad : List.of(h.toBuilder().setTotalBytes(h.getTotalBytes() + 4).build(),
                h.toBuilder().setPosition(h.getPosition() + 1).build(),
                h.toBuilder().setChunkBytes(0).build(),
                h.toBuilder().setChunkBytes(StateCodec.MAX_CHUNK_BYTES + 1).build(),
                h.toBuilder().setEncoding("lightmesh.sequence-state.v0").build(),
                h.toBuilder().setLayers(0, h.getLayers(0).toBuilder().setLength(1)).build())) {
            StatusException e = assertThrows(StatusException.class, () -> new StateCodec.Receiver(bad, model.config(), 0));
            assertEquals(Status.Code.INVALID_ARGUMENT, code(e), e.getStatus().getDescription());
        }
        StatusException e = assertThrows(StatusException.class,
                () -> receive(withData(stream, 0, ByteString.copyFrom(new byte[1001])), model.config()));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(e), "a chunk over chunk_bytes");
        List<StateChunk> extra = new ArrayList<>(stream);
        extra.add(stream.size() - 1, StateChunk.newBuilder().setData(ByteString.copyFrom(new byte[4])).build());
        e = assertThrows(StatusException.class, () -> receive(extra, model.config()));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(e), "data past total_bytes");
    }

    // ---- a state over 2 GiB, in a JVM whose heap holds the two states and little else ----

    /** 16 layers of the real model's attention shape (64 x 128 lightning heads, 8 x 128 KV heads), 2 of them softmax. */
    static ModelConfig bigShape() {
        boolean[] softmax = new boolean[16];
        softmax[7] = softmax[15] = true;
        return new ModelConfig("minimax", 1024, 256, 16, 64, 8, 128, 64, 1e7, 4, 2, 256, 1e-5, softmax,
                1, 1, 1, 1, 1, 1, 256, 10_240_000, false);
    }

    static final int BIG_POSITION = 133_000; // 14 x 4 MiB lightning + 133K x 16 KiB KV = 2.09 GiB

    @Test
    void aStateOver2GiBNeedsNoBufferOfItsSize() throws Exception {
        long bytes = StateCodec.serialisedBytes(bigShape(), BIG_POSITION);
        assertTrue(bytes > Integer.MAX_VALUE, "over what one Java array can hold: " + bytes);
        // the heap fits the sender's state and the receiver's (2 x 2.09 GiB) plus 800 MiB: not a third copy
        long heapMiB = 2 * (bytes >> 20) + 800;
        Path log = Files.createTempFile(dir, "big-state", ".log");
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx" + heapMiB + "m",
                "-XX:+UseG1GC", "--add-modules", "jdk.incubator.vector", "-cp", System.getProperty("java.class.path"),
                BigState.class.getName()).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        boolean done = p.waitFor(120, TimeUnit.SECONDS);
        if (!done) p.destroyForcibly();
        String out = Files.readString(log);
        assertTrue(done, "timed out: " + out);
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("round trip ok"), out);
        System.out.println("StateCodecTest: " + out.strip());
    }

    /** The child JVM: fills a 2.09 GiB state from a seeded stream, sends it through the codec, compares. */
    public static final class BigState {
        public static void main(String[] args) throws Exception {
            ModelConfig c = bigShape();
            long t0 = System.nanoTime();
            // the source state, decoded from a generated v1 stream whose CRC-32C is taken on the way
            StateDecoder fill = new StateDecoder(c, BIG_POSITION, BIG_POSITION);
            CRC32C expectedCrc = new CRC32C();
            Generated g = new Generated(c, BIG_POSITION);
            byte[] buf = new byte[1 << 20];
            while (!fill.complete()) {
                int n = g.next(buf, (int) Math.min(buf.length, fill.totalBytes() - fill.receivedBytes()));
                expectedCrc.update(buf, 0, n);
                fill.decode(ByteBuffer.wrap(buf, 0, n));
            }
            SequenceState source = fill.state();
            long t1 = System.nanoTime();
            // the hand-off: 1 MiB chunks made on demand, written straight into the receiver's state
            StateCodec.Sender sender = StateCodec.sender(header(), source, StateCodec.DEFAULT_CHUNK_BYTES);
            StateCodec.Receiver receiver = new StateCodec.Receiver(sender.next().getHeader(), c, BIG_POSITION);
            SequenceState received = null;
            while (sender.hasNext()) {
                StateChunk ch = sender.next();
                if (ch.hasData()) receiver.data(ch.getData());
                else {
                    if (ch.getTrailer().getCrc32C() != (int) expectedCrc.getValue()) throw new AssertionError("trailer CRC differs from the stream's");
                    received = receiver.finish(ch.getTrailer());
                }
            }
            long t2 = System.nanoTime();
            // the received state serialises to the same bytes, compared a chunk at a time
            StateEncoder a = source.encoder(), b = received.encoder();
            ByteBuffer x = ByteBuffer.allocate(1 << 20), y = ByteBuffer.allocate(1 << 20);
            while (a.hasRemaining()) {
                x.clear();
                y.clear();
                a.encode(x);
                b.encode(y);
                if (!Arrays.equals(x.array(), y.array())) throw new AssertionError("bytes differ near " + a.encodedBytes());
            }
            if (b.hasRemaining()) throw new AssertionError("received state is longer");
            System.out.printf("round trip ok: %d bytes (%.2f GiB) in %d chunks; fill %.1f s, hand-off %.1f s; max heap %d MiB%n",
                    sender.totalBytes(), sender.totalBytes() / (double) (1L << 30), (sender.totalBytes() + (1 << 20) - 1) >> 20,
                    (t1 - t0) / 1e9, (t2 - t1) / 1e9, Runtime.getRuntime().maxMemory() >> 20);
        }
    }

    /** A v1 stream of seeded floats, the integer fields as the format wants them, produced a buffer at a time. */
    static final class Generated {
        private final List<Object> runs = new ArrayList<>(); // byte[]: big-endian int32s; Long: a number of floats
        private final float[] floats = new float[1 << 18];
        private int run;
        private long done;  // bytes or floats of the current run already produced
        private long seed = 42;

        Generated(ModelConfig c, int position) {
            runs.add(ByteBuffer.allocate(28).putInt(0x4c4d5353).putInt(1).putInt(c.numLayers()).putInt(c.numHeads())
                    .putInt(c.headDim()).putInt(c.numKvHeads()).putInt(position).array());
            for (var l : StateCodec.layout(c, position)) {
                if (l.getKind() == io.lightmesh.proto.v1.LayerKind.LAYER_KIND_SOFTMAX) {
                    runs.add(ByteBuffer.allocate(4).putInt(position).array());
                    runs.add((l.getLength() - 4) / 4);
                } else {
                    runs.add(l.getLength() / 4);
                }
            }
        }

        /** Fills out[0..n) with the next bytes, n at most max (less at the end of a run); 0 at the end. */
        int next(byte[] out, int max) {
            if (run == runs.size()) return 0;
            int n;
            if (runs.get(run) instanceof byte[] ints) {
                n = (int) Math.min(max, ints.length - done);
                System.arraycopy(ints, (int) done, out, 0, n);
                done += n;
                if (done == ints.length) { run++; done = 0; }
                return n;
            }
            long count = (Long) runs.get(run);
            int k = (int) Math.min(Math.min(max / 4, floats.length), count - done);
            for (int i = 0; i < k; i++) {
                seed = seed * 6364136223846793005L + 1442695040888963407L;
                floats[i] = (int) (seed >>> 40) * 0x1p-20f - 8f;
            }
            ByteBuffer.wrap(out, 0, 4 * k).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().put(floats, 0, k);
            done += k;
            if (done == count) { run++; done = 0; }
            return 4 * k;
        }
    }
}
