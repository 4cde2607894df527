package io.lightmesh.mesh;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.proto.v1.LayerKind;
import io.lightmesh.proto.v1.LayerState;
import io.lightmesh.proto.v1.StateChunk;
import io.lightmesh.proto.v1.StateDType;
import io.lightmesh.proto.v1.StateHeader;
import io.lightmesh.proto.v1.StateTrailer;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * The state hand-off on the wire: a {@link SequenceState} serialised by the engine
 * ("lightmesh.sequence-state.v1"), cut into chunks, checked with CRC-32C.
 *
 * <p>Limit: the serialised state is held in one byte array (under 2 GiB: the real model's 280 MiB of lightning
 * state plus about 21K tokens of fp32 KV). Longer sequences need a streaming writer; noted in the report.
 */
public final class StateCodec {
    public static final String ENCODING = "lightmesh.sequence-state.v1";
    public static final int DEFAULT_CHUNK_BYTES = 1 << 20;
    /** Bytes of the engine's serialisation header: magic, version, layers, H, D, KV, position. */
    private static final int PREAMBLE = 7 * Integer.BYTES;

    private StateCodec() {}

    public static byte[] serialise(SequenceState s) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream((int) Math.min(Integer.MAX_VALUE - 8, s.byteSize() + 4096));
        try (DataOutputStream out = new DataOutputStream(bytes)) {
            s.writeTo(out);
        } catch (IOException e) {
            throw new IllegalStateException(e); // in-memory: cannot happen
        }
        return bytes.toByteArray();
    }

    /** The serialised size of a state of {@code position} tokens (lightning states plus KV rows), for reservations. */
    public static long serialisedBytes(ModelConfig c, long position) {
        long b = PREAMBLE;
        long H = c.numHeads(), D = c.headDim();
        for (int l = 0; l < c.numLayers(); l++) b += c.isSoftmax(l) ? Integer.BYTES + 2L * position * c.kvDim() * Float.BYTES : H * D * D * Float.BYTES;
        return b;
    }

    /** Bytes a state grows by per token (the softmax layers' K and V rows, fp32). */
    public static long bytesPerToken(ModelConfig c) {
        return 2L * c.numSoftmaxLayers() * c.kvDim() * Float.BYTES;
    }

    /** Where each layer lies in the serialised form (KV length taken equal to the position). */
    public static List<LayerState> layout(ModelConfig c, int position) {
        List<LayerState> layers = new ArrayList<>();
        long off = PREAMBLE;
        int H = c.numHeads(), D = c.headDim();
        for (int l = 0; l < c.numLayers(); l++) {
            LayerState.Builder b = LayerState.newBuilder().setLayer(l).setOffset(off).setDtype(StateDType.STATE_DTYPE_F32);
            long len;
            if (c.isSoftmax(l)) {
                len = Integer.BYTES + 2L * position * c.kvDim() * Float.BYTES;
                b.setKind(LayerKind.LAYER_KIND_SOFTMAX).addShape(position).addShape(c.numKvHeads()).addShape(D);
            } else {
                len = (long) H * D * D * Float.BYTES;
                b.setKind(LayerKind.LAYER_KIND_LIGHTNING).addShape(H).addShape(D).addShape(D);
            }
            layers.add(b.setLength(len).build());
            off += len;
        }
        return layers;
    }

    /** The Send stream for one state: the header (total_bytes and chunk_bytes filled in), data chunks, trailer. */
    public static List<StateChunk> chunks(StateHeader.Builder header, byte[] data, int chunkBytes) {
        List<StateChunk> out = new ArrayList<>();
        out.add(StateChunk.newBuilder().setHeader(header.setTotalBytes(data.length).setChunkBytes(chunkBytes).setEncoding(ENCODING)).build());
        CRC32C crc = new CRC32C();
        int n = 0;
        for (int off = 0; off < data.length; off += chunkBytes, n++) {
            int len = Math.min(chunkBytes, data.length - off);
            crc.update(data, off, len);
            out.add(StateChunk.newBuilder().setData(UnsafeByteOperations.unsafeWrap(data, off, len)).build());
        }
        out.add(StateChunk.newBuilder().setTrailer(StateTrailer.newBuilder().setCrc32C((int) crc.getValue()).setTotalBytes(data.length).setChunks(n)).build());
        return out;
    }

    /** Collects the data chunks of one Send and checks them against the trailer. Not thread-safe (one per stream). */
    public static final class Assembler {
        private final StateHeader header;
        private final List<ByteString> parts = new ArrayList<>();
        private final CRC32C crc = new CRC32C();
        private long received;

        public Assembler(StateHeader header) { this.header = header; }

        public void data(ByteString bytes) {
            received += bytes.size();
            if (received > header.getTotalBytes()) throw new IllegalArgumentException("more data than the header's " + header.getTotalBytes() + " bytes");
            crc.update(bytes.asReadOnlyByteBuffer());
            parts.add(bytes);
        }

        public long received() { return received; }

        /** Checks size and CRC against the trailer; null when they match, else what is wrong. */
        public String verify(StateTrailer t) {
            if (received != header.getTotalBytes() || t.getTotalBytes() != received) {
                return "size mismatch: header " + header.getTotalBytes() + ", trailer " + t.getTotalBytes() + ", received " + received;
            }
            if ((int) crc.getValue() != t.getCrc32C()) {
                return String.format("crc32c mismatch: computed %08x, trailer %08x", (int) crc.getValue(), t.getCrc32C());
            }
            return null;
        }

        public SequenceState state(ModelConfig config) throws IOException {
            return SequenceState.readFrom(new DataInputStream(ByteString.copyFrom(parts).newInput()), config);
        }
    }
}
