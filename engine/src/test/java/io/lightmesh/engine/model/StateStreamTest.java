package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The incremental serialisation of a {@link SequenceState}: {@link StateEncoder} pieces of any size concatenate to
 * the version 1 format (written here independently, as it was first specified), and {@link StateDecoder} rebuilds
 * the state from pieces that split integers, floats and layers anywhere, rejecting streams that contradict it.
 */
class StateStreamTest {
    @TempDir static Path dir;
    static MiniMaxModel model;
    static SequenceState state;

    @BeforeAll
    static void load() throws Exception {
        SyntheticCheckpoint.write(dir, SyntheticCheckpoint.Shape.tiny(), DType.F32, 5, false);
        model = MiniMaxModel.load(dir, new ReferenceOps());
        state = model.newState();
        model.prefill(state, new SplittableRandom(9).ints(37, 0, 512).toArray());
    }

    @AfterAll
    static void close() { model.close(); }

    /** Version 1 as specified: big-endian int32 preamble and KV lengths, little-endian float32 tensors. */
    static byte[] v1(SequenceState s) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        DataOutputStream out = new DataOutputStream(bytes);
        var c = s.config();
        for (int v : new int[]{0x4c4d5353, 1, c.numLayers(), c.numHeads(), c.headDim(), c.numKvHeads(), s.position()}) out.writeInt(v);
        for (int l = 0; l < c.numLayers(); l++) {
            if (c.isSoftmax(l)) {
                KvCache kv = s.kvCache(l);
                out.writeInt(kv.length());
                littleEndian(out, kv.keys(), kv.length() * kv.rowWidth());
                littleEndian(out, kv.values(), kv.length() * kv.rowWidth());
            } else {
                littleEndian(out, s.lightningState(l), s.lightningState(l).length);
            }
        }
        return bytes.toByteArray();
    }

    static void littleEndian(DataOutputStream out, float[] a, int n) throws IOException {
        for (int i = 0; i < n; i++) out.writeInt(Integer.reverseBytes(Float.floatToRawIntBits(a[i])));
    }

    static byte[] encodeInPieces(SequenceState s, int piece) {
        StateEncoder e = s.encoder();
        ByteBuffer all = ByteBuffer.allocate((int) e.totalBytes());
        while (e.hasRemaining()) {
            ByteBuffer buf = ByteBuffer.allocate(piece);
            int n = e.encode(buf);
            assertEquals(Math.min(piece, all.remaining()), n, "a piece is full unless it is the last");
            all.put(buf.flip());
        }
        assertEquals(0, e.encode(ByteBuffer.allocate(8)), "nothing after the end");
        return all.array();
    }

    @Test
    void piecesOfAnySizeConcatenateToTheVersion1Format() throws IOException {
        byte[] expected = v1(state);
        assertEquals(SequenceState.serialisedBytes(model.config(), state.position()), expected.length);
        int layer0 = 16 * 16 * 4 * 4; // one lightning layer's bytes: pieces around it split layers
        for (int piece : new int[]{1, 3, 4, 5, 7, 29, 1000, layer0 - 1, layer0 + 3, 1 << 20}) {
            assertArrayEquals(expected, encodeInPieces(state, piece), "pieces of " + piece + " bytes");
        }
        ByteArrayOutputStream viaWriteTo = new ByteArrayOutputStream();
        state.writeTo(new DataOutputStream(viaWriteTo));
        assertArrayEquals(expected, viaWriteTo.toByteArray());
    }

    @Test
    void decodingPiecesOfAnySizeRestoresTheState() throws IOException {
        byte[] bytes = v1(state);
        SplittableRandom r = new SplittableRandom(1);
        for (int piece : new int[]{1, 3, 6, 4099, 0 /* random sizes */}) {
            StateDecoder d = new StateDecoder(model.config(), state.position(), state.position() + 8);
            assertEquals(bytes.length, d.totalBytes());
            for (int off = 0; off < bytes.length; ) {
                int n = Math.min(bytes.length - off, piece > 0 ? piece : 1 + r.nextInt(3000));
                assertFalse(d.complete());
                d.decode(ByteBuffer.wrap(bytes, off, n));
                off += n;
            }
            SequenceState back = d.state();
            assertEquals(state.position(), back.position());
            assertArrayEquals(bytes, v1(back), "pieces of " + piece);
        }
        // the restored state computes what the original does, bit for bit
        SequenceState a = SequenceState.readFrom(new java.io.DataInputStream(new java.io.ByteArrayInputStream(bytes)), model.config());
        SequenceState b = SequenceState.readFrom(new java.io.DataInputStream(new java.io.ByteArrayInputStream(bytes)), model.config());
        StateDecoder d = new StateDecoder(model.config(), state.position(), state.position());
        d.decode(ByteBuffer.wrap(bytes));
        float[] x = model.decode(List.of(a), new int[]{42})[0];
        assertArrayEquals(x, model.decode(List.of(b), new int[]{42})[0]);
        assertArrayEquals(x, model.decode(List.of(d.state()), new int[]{42})[0]);
    }

    @Test
    void theDecoderAllocatesEverythingUpFront() {
        var c = model.config();
        StateDecoder d = new StateDecoder(c, 37, 100);
        long kvRow = 2L * c.kvDim() * Float.BYTES; // K and V of one token of one softmax layer
        assertEquals(state.lightningBytes() + c.numSoftmaxLayers() * 100 * kvRow, d.allocatedBytes(), "sized for 100 tokens");
        assertEquals(state.lightningBytes() + c.numSoftmaxLayers() * 37 * kvRow,
                new StateDecoder(c, 37, 0).allocatedBytes(), "at least the position");
        assertThrows(IllegalStateException.class, d::state, "not before the bytes arrived");
        assertThrows(IllegalArgumentException.class, () -> new StateDecoder(c, -1, 0));
    }

    @Test
    void streamsThatContradictTheStateAreRejected() throws IOException {
        byte[] good = v1(state);
        int kvLengthAt = 28 + 7 * 16 * 16 * 4 * 4; // layer 7 (softmax) follows 7 lightning layers
        assertEquals(state.position(), ByteBuffer.wrap(good, kvLengthAt, 4).getInt());
        record Case(String expect, int at, int xor) {}
        for (Case c : List.of(new Case("bad magic", 0, 1), new Case("version", 7, 1), new Case("heads", 15, 1),
                new Case("position", 27, 2), new Case("layer 7 KV length", kvLengthAt + 3, 1))) {
            byte[] bad = good.clone();
            bad[c.at] ^= (byte) c.xor;
            StateDecoder d = new StateDecoder(model.config(), state.position(), state.position());
            IOException e = assertThrows(IOException.class, () -> {
                for (int off = 0; off < bad.length; off += 5) d.decode(ByteBuffer.wrap(bad, off, Math.min(5, bad.length - off)));
            });
            assertTrue(e.getMessage().contains(c.expect), e.getMessage());
            assertThrows(IOException.class, () -> d.decode(ByteBuffer.wrap(good, 0, 1)), "refuses input after a failure");
            assertThrows(IllegalStateException.class, d::state);
        }
        StateDecoder d = new StateDecoder(model.config(), state.position(), state.position());
        d.decode(ByteBuffer.wrap(good, 0, good.length - 1));
        IOException e = assertThrows(IOException.class, () -> d.decode(ByteBuffer.wrap(new byte[2])));
        assertTrue(e.getMessage().contains("left"), e.getMessage());
        // truncated: never complete
        StateDecoder t = new StateDecoder(model.config(), state.position(), state.position());
        t.decode(ByteBuffer.wrap(Arrays.copyOf(good, good.length - 4)));
        assertFalse(t.complete());
        assertThrows(IllegalStateException.class, t::state);
    }
}
