package io.lightmesh.mesh;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateDecoder;
import io.lightmesh.engine.model.StateEncoder;
import io.lightmesh.proto.v1.LayerKind;
import io.lightmesh.proto.v1.LayerState;
import io.lightmesh.proto.v1.StateAck;
import io.lightmesh.proto.v1.StateChunk;
import io.lightmesh.proto.v1.StateDType;
import io.lightmesh.proto.v1.StateHeader;
import io.lightmesh.proto.v1.StateTrailer;
import io.lightmesh.proto.v1.StateTransferGrpc;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.zip.CRC32C;

/**
 * The state hand-off on the wire (state_transfer.proto): a {@link SequenceState} in the engine's serialised form
 * ("lightmesh.sequence-state.v1"), streamed as a header, data chunks and a CRC-32C trailer.
 *
 * <p>Neither side ever holds the serialised form: the {@link Sender} encodes each chunk from the state's arrays when
 * it is asked for the next one, and the {@link Receiver} allocates the whole state from the header (position and
 * layout), then copies each chunk straight into it. Memory beyond the state itself is one chunk, whatever the size
 * (MiniMax-M1: 280 MiB of lightning state plus 80 KiB a token of fp32 KV, 80 GiB for a 1M-token prompt).
 */
public final class StateCodec {
    public static final String ENCODING = "lightmesh.sequence-state.v1";
    public static final int DEFAULT_CHUNK_BYTES = 1 << 20;
    /** Largest chunk_bytes a receiver accepts (the mesh's channels take messages of up to 64 MiB, {@link Grpc}). */
    public static final int MAX_CHUNK_BYTES = 4 << 20;
    /** Bytes of the serialised form's preamble: magic, version, layers, H, D, KV, position (int32 each). */
    private static final int PREAMBLE = 7 * Integer.BYTES;

    private StateCodec() {}

    /** The serialised size of a state of {@code position} tokens (lightning states plus KV rows), for reservations. */
    public static long serialisedBytes(ModelConfig c, long position) { return SequenceState.serialisedBytes(c, position); }

    /** Bytes a state grows by per token (the softmax layers' K and V rows, fp32). */
    public static long bytesPerToken(ModelConfig c) {
        return 2L * c.numSoftmaxLayers() * c.kvDim() * Float.BYTES;
    }

    /** Where each layer lies in the serialised form (KV length equal to the position). */
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

    /**
     * The Send stream of one state, produced lazily: the header (encoding, total_bytes, chunk_bytes and layers filled
     * in), then data chunks of {@code chunkBytes} (the last one shorter), then the trailer. The state must not change
     * until the last chunk was taken.
     */
    public static Sender sender(StateHeader.Builder header, SequenceState state, int chunkBytes) {
        return new Sender(header, state, chunkBytes);
    }

    /** The messages of one Send, each made when asked for; the CRC-32C is taken over the data as it goes. */
    public static final class Sender implements Iterator<StateChunk> {
        private final StateHeader header;
        private final StateEncoder encoder;
        private final int chunkBytes;
        private final CRC32C crc = new CRC32C();
        private boolean headerSent, trailerSent;
        private int chunks;
        private volatile long sent; // data bytes handed out, readable from any thread

        private Sender(StateHeader.Builder h, SequenceState state, int chunkBytes) {
            if (chunkBytes <= 0 || chunkBytes > MAX_CHUNK_BYTES) throw new IllegalArgumentException("chunk size " + chunkBytes + " outside 1.." + MAX_CHUNK_BYTES);
            this.encoder = state.encoder();
            this.chunkBytes = chunkBytes;
            this.header = h.setEncoding(ENCODING).setTotalBytes(encoder.totalBytes()).setChunkBytes(chunkBytes)
                    .setPosition(state.position()).clearLayers().addAllLayers(layout(state.config(), state.position())).build();
        }

        public long totalBytes() { return encoder.totalBytes(); }

        /** Data bytes handed out so far (safe to read from any thread). */
        public long sentBytes() { return sent; }

        @Override
        public boolean hasNext() { return !trailerSent; }

        @Override
        public StateChunk next() {
            if (!headerSent) {
                headerSent = true;
                return StateChunk.newBuilder().setHeader(header).build();
            }
            if (encoder.hasRemaining()) {
                // a fresh array per chunk: gRPC may still hold the previous one until it is on the wire
                ByteBuffer buf = ByteBuffer.allocate((int) Math.min(chunkBytes, encoder.totalBytes() - encoder.encodedBytes()));
                encoder.encode(buf);
                crc.update(buf.array(), 0, buf.position());
                chunks++;
                sent = encoder.encodedBytes();
                return StateChunk.newBuilder().setData(UnsafeByteOperations.unsafeWrap(buf.array())).build();
            }
            if (trailerSent) throw new NoSuchElementException();
            trailerSent = true;
            return StateChunk.newBuilder().setTrailer(StateTrailer.newBuilder().setCrc32C((int) crc.getValue())
                    .setTotalBytes(encoder.encodedBytes()).setChunks(chunks)).build();
        }
    }

    /**
     * Streams one state over StateTransfer.Send, a chunk made each time gRPC's flow control says the call can take one
     * (isReady / onReady), so the serialised form never exists whole; returns the decode worker's verdict, or throws
     * the call's failure ({@link io.grpc.StatusRuntimeException}: DATA_LOSS, INVALID_ARGUMENT, UNAVAILABLE, ...).
     * The deadline grows with the state: 60 s plus 10 s a GiB.
     */
    public static StateAck send(StateTransferGrpc.StateTransferStub stub, Sender chunks) {
        return send(stub, chunks, Duration.ofSeconds(60 + 10 * (chunks.totalBytes() >> 30)));
    }

    /** As {@link #send(StateTransferGrpc.StateTransferStub, Sender)}, for any stream of chunks. */
    public static StateAck send(StateTransferGrpc.StateTransferStub stub, Iterator<StateChunk> chunks, Duration deadline) {
        CompletableFuture<StateAck> result = new CompletableFuture<>();
        stub.withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS).send(new ClientResponseObserver<StateChunk, StateAck>() {
            private ClientCallStreamObserver<StateChunk> call;
            private boolean completed;

            @Override
            public void beforeStart(ClientCallStreamObserver<StateChunk> call) {
                this.call = call;
                call.setOnReadyHandler(this::pump); // run serially on gRPC's executor, each time the call can take more
            }

            private void pump() {
                try {
                    while (!completed && !result.isDone() && call.isReady() && chunks.hasNext()) call.onNext(chunks.next());
                    if (!completed && (result.isDone() || !chunks.hasNext())) { // all sent, or answered early (rejected)
                        completed = true;
                        call.onCompleted();
                    }
                } catch (RuntimeException e) {
                    completed = true;
                    call.onError(e); // cancels the call: the decode worker frees what it held
                    result.completeExceptionally(e);
                }
            }

            @Override public void onNext(StateAck a) { result.complete(a); }
            @Override public void onError(Throwable t) { result.completeExceptionally(t); }
            @Override public void onCompleted() { result.complete(StateAck.getDefaultInstance()); }
        });
        try {
            return result.get(deadline.toMillis() + 5000, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof StatusRuntimeException s) throw s;
            throw new IllegalStateException(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while sending a state", e);
        } catch (TimeoutException e) {
            throw new IllegalStateException("state transfer did not complete within " + deadline, e);
        }
    }

    /**
     * One Send on the receiving side: checks the header against the model, allocates the state it announces, writes
     * each data chunk into it and checks the trailer. Failures are gRPC statuses: INVALID_ARGUMENT when the stream
     * breaks the protocol (header inconsistent with the model, chunk over chunk_bytes, more data than total_bytes),
     * DATA_LOSS when bytes were lost or damaged (data contradicting the header, too few bytes, chunk count or CRC-32C
     * mismatch, a stream ended without a trailer). Not thread-safe (one per stream).
     */
    public static final class Receiver {
        private final StateHeader header;
        private final StateDecoder decoder;
        private final CRC32C crc = new CRC32C();
        private int chunks;

        /**
         * @param kvCapacity tokens the softmax layers' KV caches are sized for (at least the position: room to decode
         *                   into without growing them)
         */
        public Receiver(StateHeader h, ModelConfig c, int kvCapacity) throws StatusException {
            if (!ENCODING.equals(h.getEncoding())) throw invalid("encoding '" + h.getEncoding() + "', expected " + ENCODING);
            if (h.getPosition() < 0 || h.getPosition() > c.maxPositions()) throw invalid("position " + h.getPosition() + " out of range");
            long expected = serialisedBytes(c, h.getPosition());
            if (h.getTotalBytes() != expected) {
                throw invalid("total_bytes " + h.getTotalBytes() + " but a state of " + h.getPosition() + " tokens is " + expected + " bytes");
            }
            if (h.getChunkBytes() <= 0 || h.getChunkBytes() > MAX_CHUNK_BYTES) throw invalid("chunk_bytes " + h.getChunkBytes() + " outside 1.." + MAX_CHUNK_BYTES);
            if (h.getLayersCount() > 0 && !h.getLayersList().equals(layout(c, h.getPosition()))) {
                throw invalid("layer layout does not match this model's at position " + h.getPosition());
            }
            this.header = h;
            try {
                this.decoder = new StateDecoder(c, h.getPosition(), Math.max(h.getPosition(), kvCapacity));
            } catch (IllegalArgumentException | IllegalStateException e) {
                throw invalid(e.getMessage());
            }
        }

        public StateHeader header() { return header; }

        /** Data bytes received so far. */
        public long received() { return decoder.receivedBytes(); }

        public void data(ByteString bytes) throws StatusException {
            if (bytes.size() > header.getChunkBytes()) throw invalid("chunk of " + bytes.size() + " bytes over chunk_bytes " + header.getChunkBytes());
            if (bytes.size() > header.getTotalBytes() - received()) {
                throw invalid("more data than total_bytes " + header.getTotalBytes() + " (" + received() + " received, chunk of " + bytes.size() + ")");
            }
            chunks++;
            try {
                for (ByteBuffer b : bytes.asReadOnlyByteBufferList()) {
                    crc.update(b.duplicate());
                    decoder.decode(b);
                }
            } catch (IOException e) {
                throw lost("state data at byte " + received() + ": " + e.getMessage());
            }
        }

        /** Checks the trailer against what arrived; the state, once everything matches. */
        public SequenceState finish(StateTrailer t) throws StatusException {
            if (received() != header.getTotalBytes() || t.getTotalBytes() != header.getTotalBytes()) {
                throw lost("size mismatch: header " + header.getTotalBytes() + ", trailer " + t.getTotalBytes() + ", received " + received());
            }
            if (t.getChunks() != chunks) throw lost("trailer counts " + t.getChunks() + " chunks, received " + chunks);
            if ((int) crc.getValue() != t.getCrc32C()) {
                throw lost(String.format("crc32c mismatch: computed %08x, trailer %08x", (int) crc.getValue(), t.getCrc32C()));
            }
            return decoder.state();
        }

        /** The error for a stream that ended before its trailer. */
        public StatusException truncated() {
            return lost("stream ended without a trailer after " + received() + " of " + header.getTotalBytes() + " bytes");
        }
    }

    public static StatusException invalid(String detail) {
        return Status.INVALID_ARGUMENT.withDescription("state transfer: " + detail).asException();
    }

    public static StatusException lost(String detail) {
        return Status.DATA_LOSS.withDescription("state transfer: " + detail).asException();
    }
}
