package io.lightmesh.mesh;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.google.protobuf.InvalidProtocolBufferException;
import io.grpc.Status;
import io.grpc.StatusException;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.fuzz.FuzzHarness;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.proto.v1.StateChunk;
import io.lightmesh.proto.v1.StateHeader;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.SplittableRandom;

import static io.lightmesh.engine.fuzz.FuzzHarness.committedSeed;
import static io.lightmesh.engine.fuzz.FuzzHarness.parsedOrRefused;
import static io.lightmesh.engine.fuzz.FuzzHarness.refusal;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The state-transfer stream as a decode worker receives it from any sender: a sequence of StateChunk messages,
 * mutated as bytes (the input is {@code [u16 big-endian length][StateChunk]} repeated), fed to a
 * {@link StateCodec.Receiver} as DecodeWorker feeds it. A broken stream may only fail as the Receiver documents:
 * INVALID_ARGUMENT (protocol broken) or DATA_LOSS (bytes lost or damaged); bytes that are no StateChunk fail in
 * protobuf's parser, as in gRPC's. Any other exception is a finding; so is accepting a state whose position is not
 * the header's. The model is a very small M1 shape (8 layers, one softmax) with max_position_embeddings 256, so a
 * header's position cannot ask for more memory than the worker's budget would grant (the decode worker charges
 * the budget for the announced state before the Receiver allocates it). Seeds: valid streams at positions 0 and 5
 * (LIGHTMESH_WRITE_SEEDS=1 makes {@link #validStreamsAreReceived} rewrite them).
 */
class StateStreamFuzzTest {
    static final ModelConfig CONFIG;
    private static final Set<Status.Code> DOCUMENTED = Set.of(Status.Code.INVALID_ARGUMENT, Status.Code.DATA_LOSS);
    private static final SyntheticCheckpoint.Shape SHAPE = new SyntheticCheckpoint.Shape(64, 16, 8, 2, 1, 4, 4, 2, 1, 8, 16);

    static {
        try {
            CONFIG = withModel(m -> {
                ModelConfig c = m.config();
                return new ModelConfig(c.modelType(), c.vocabSize(), c.hiddenSize(), c.numLayers(), c.numHeads(), c.numKvHeads(),
                        c.headDim(), c.rotaryDim(), c.ropeTheta(), c.numExperts(), c.topK(), c.intermediateSize(), c.rmsNormEps(),
                        c.softmaxLayer(), c.linearAttnAlpha(), c.linearAttnBeta(), c.fullAttnAlpha(), c.fullAttnBeta(),
                        c.mlpAlpha(), c.mlpBeta(), c.blockSize(), 256, c.tieWordEmbeddings());
            });
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** What a use of the small model gives. */
    private interface ModelUse<T> {
        T apply(MiniMaxModel m) throws IOException;
    }

    /** {@code use} of the small model, loaded from a synthetic checkpoint in a temporary folder removed after. */
    private static <T> T withModel(ModelUse<T> use) throws IOException {
        Path dir = FuzzHarness.tempDir("state-fuzz");
        try {
            SyntheticCheckpoint.write(dir, SHAPE, DType.F32, 3, false);
            try (MiniMaxModel m = MiniMaxModel.load(dir, new ReferenceOps())) {
                return use.apply(m);
            }
        } finally {
            try (var files = Files.walk(dir)) {
                files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    @FuzzTest(maxDuration = "10s")
    void receive(byte[] stream) throws Exception {
        parsedOrRefused(() -> received(stream),
                refusal(InvalidProtocolBufferException.class), // not a StateChunk: gRPC's unmarshaller fails the call the same way
                refusal(StatusException.class, e -> {
                    assertTrue(DOCUMENTED.contains(e.getStatus().getCode()), () -> "undocumented status " + e.getStatus());
                    assertNotNull(e.getStatus().getDescription());
                }));
    }

    /** The stream fed to a Receiver as DecodeWorker feeds it: the state received, or null where the stream ends early. */
    private static SequenceState received(byte[] stream) throws InvalidProtocolBufferException, StatusException {
        ByteBuffer in = ByteBuffer.wrap(stream);
        StateCodec.Receiver receiver = null;
        while (in.remaining() >= 2) {
            int len = Math.min(in.getShort() & 0xffff, in.remaining());
            byte[] msg = new byte[len];
            in.get(msg);
            StateChunk chunk = StateChunk.parseFrom(msg);
            switch (chunk.getPartCase()) {
                case HEADER -> {
                    if (receiver != null) return null; // DecodeWorker: a second header is INVALID_ARGUMENT, before the Receiver
                    receiver = new StateCodec.Receiver(chunk.getHeader(), CONFIG, 0);
                }
                case DATA -> {
                    if (receiver == null) return null; // DecodeWorker: data before the header is INVALID_ARGUMENT
                    receiver.data(chunk.getData());
                }
                case TRAILER -> {
                    if (receiver == null) return null;
                    SequenceState s = receiver.finish(chunk.getTrailer());
                    assertNotNull(s);
                    assertEquals(receiver.header().getPosition(), s.position());
                    return s;
                }
                default -> { return null; }
            }
        }
        if (receiver != null) assertTrue(DOCUMENTED.contains(receiver.truncated().getStatus().getCode()));
        return null;
    }

    /** The framing of the fuzz input: a Sender's stream of a state at {@code position}, in chunks of {@code chunkBytes}. */
    static byte[] framed(int position, int chunkBytes) throws IOException {
        return withModel(m -> {
            SequenceState s = m.newState();
            if (position > 0) m.prefill(s, new SplittableRandom(1).ints(position, 0, 64).toArray());
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            StateCodec.sender(StateHeader.newBuilder().setRequestId("r").setModelFingerprint("fp"), s, chunkBytes).forEachRemaining(c -> {
                byte[] b = c.toByteArray();
                out.write(b.length >>> 8);
                out.write(b.length);
                out.writeBytes(b);
            });
            return out.toByteArray();
        });
    }

    /** The harness accepts a valid stream (so a finding is the parser's, not the harness's); the seeds are such streams. */
    @Test
    void validStreamsAreReceived() throws Exception {
        Path seeds = Path.of("src/test/resources/io/lightmesh/mesh/StateStreamFuzzTestInputs/receive");
        for (int position : new int[] {0, 5}) {
            byte[] stream = framed(position, 256);
            assertNotNull(received(stream), "a valid stream at position " + position + " is received whole");
            committedSeed(seeds, "valid-position-" + position, stream);
        }
    }
}
