package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.opencl.OpenClTestSupport;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The whole decode step on the device-resident path ({@link ResidentDecoder}) against the reference backend on a
 * seeded random model (one softmax layer, lightning block 16): a continuous batch of sequences at different
 * positions, the state's sync points (serialised after device steps, a host prefill between device steps), and the
 * device copy's release. Tolerance as the fixtures: max |diff| / max |ref logit| <= 1e-4.
 */
class ResidentDecodeTest {
    static final double TOL = ReferenceFixturesTest.TOL;

    @TempDir static Path dir;

    enum Dt { F32, BF16 }

    private static Path checkpoint(Dt dt) throws IOException {
        Path p = dir.resolve(dt.name());
        SyntheticCheckpoint.write(p, SyntheticCheckpoint.Shape.tiny(), dt == Dt.F32 ? DType.F32 : DType.BF16, 21, true);
        return p;
    }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void batchedDecodeAtRaggedPositionsMatchesReference(Dt dt) throws IOException {
        Path p = checkpoint(dt);
        var cl = OpenClTestSupport.ops();
        try (MiniMaxModel ref = MiniMaxModel.load(p, new ReferenceOps()); MiniMaxModel dev = MiniMaxModel.load(p, cl)) {
            assertTrue(dev.decodesOnDevice());
            assertTrue(dev.prefillsOnDevice(), "the prompts below are prefilled on the device (lightning scan, GEMM)");
            SplittableRandom rnd = new SplittableRandom(4);
            int[] lengths = {1, 17, 40, 3, 33, 9, 50, 16, 21, 5}; // 10 sequences: two launches of rows per product
            List<SequenceState> rs = new ArrayList<>(), ds = new ArrayList<>();
            for (int len : lengths) {
                int[] prompt = rnd.ints(len, 0, 512).toArray();
                SequenceState a = ref.newState(), b = dev.newState();
                ref.prefill(a, prompt);
                dev.prefill(b, prompt);
                rs.add(a);
                ds.add(b);
            }
            for (int step = 0; step < 6; step++) {
                int[] tokens = rnd.ints(lengths.length, 0, 512).toArray();
                float[][] want = ref.decode(rs, tokens), got = dev.decode(ds, tokens);
                for (int i = 0; i < tokens.length; i++) {
                    ReferenceFixturesTest.assertClose(want[i], got[i], dt + " step " + step + " sequence " + i);
                }
                // a sequence leaves the batch, the others go on
                if (step == 2) {
                    rs.remove(3);
                    ds.remove(3).releaseDevice();
                    lengths = java.util.Arrays.copyOf(lengths, lengths.length - 1);
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Dt.class)
    void deviceStateSyncsAtSerialisationAndHostPrefill(Dt dt) throws IOException {
        Path p = checkpoint(dt);
        try (MiniMaxModel ref = MiniMaxModel.load(p, new ReferenceOps());
             MiniMaxModel dev = MiniMaxModel.load(p, OpenClTestSupport.ops())) {
            SplittableRandom rnd = new SplittableRandom(6);
            int[] prompt = rnd.ints(37, 0, 512).toArray();
            SequenceState a = ref.newState(), b = dev.newState();
            ref.prefill(a, prompt);
            dev.prefill(b, prompt);
            for (int i = 0; i < 5; i++) {
                int t = rnd.nextInt(512);
                ReferenceFixturesTest.assertClose(ref.decode(List.of(a), new int[]{t})[0],
                        dev.decode(List.of(b), new int[]{t})[0], dt + " device decode " + i);
            }
            assertTrue(b.onDevice());
            // serialised after device steps: the shipped state continues on the reference backend like the original
            SequenceState shipped = roundTrip(b, dev);
            assertTrue(b.byteSize() == a.byteSize(), "byte size counts the device's KV rows");
            int t = rnd.nextInt(512);
            float[] want = ref.decode(List.of(a), new int[]{t})[0];
            SequenceState shippedOnRef = roundTrip(shipped, ref);
            ReferenceFixturesTest.assertClose(want, ref.decode(List.of(shippedOnRef), new int[]{t})[0],
                    dt + " shipped state on the reference backend");
            ReferenceFixturesTest.assertClose(want, dev.decode(List.of(b), new int[]{t})[0], dt + " device after shipping");
            // a host prefill continues from the device's steps, then decode goes back to the device
            int[] more = rnd.ints(20, 0, 512).toArray();
            MiniMaxModel host = dev.withHostPrefill();
            assertFalse(host.prefillsOnDevice());
            ReferenceFixturesTest.assertClose(ref.prefill(a, more), host.prefill(b, more), dt + " host prefill after device decode");
            for (int i = 0; i < 3; i++) {
                int u = rnd.nextInt(512);
                ReferenceFixturesTest.assertClose(ref.decode(List.of(a), new int[]{u})[0],
                        dev.decode(List.of(b), new int[]{u})[0], dt + " device decode after host prefill " + i);
            }
            b.releaseDevice();
            assertFalse(b.onDevice());
            int u = rnd.nextInt(512);
            ReferenceFixturesTest.assertClose(ref.decode(List.of(a), new int[]{u})[0],
                    dev.decode(List.of(b), new int[]{u})[0], dt + " decode after release");
        }
    }

    /**
     * Prefill on the device returns the logits of any rows asked for (the {@code score} path), and a second prompt
     * continues the state (the lightning states and KV cache carried on the device between calls).
     */
    @ParameterizedTest
    @EnumSource(Dt.class)
    void devicePrefillLogitRowsAndContinuationMatchReference(Dt dt) throws IOException {
        Path p = checkpoint(dt);
        try (MiniMaxModel ref = MiniMaxModel.load(p, new ReferenceOps());
             MiniMaxModel dev = MiniMaxModel.load(p, OpenClTestSupport.ops())) {
            assertTrue(dev.prefillsOnDevice());
            SplittableRandom rnd = new SplittableRandom(8);
            int[] prompt = rnd.ints(70, 0, 512).toArray(), rows = {0, 15, 16, 33, 69};
            SequenceState a = ref.newState(), b = dev.newState();
            float[][] want = ref.prefill(a, prompt, rows), got = dev.prefill(b, prompt, rows);
            for (int i = 0; i < rows.length; i++) {
                ReferenceFixturesTest.assertClose(want[i], got[i], dt + " logits of row " + rows[i]);
            }
            int[] more = rnd.ints(45, 0, 512).toArray();
            ReferenceFixturesTest.assertClose(ref.prefill(a, more), dev.prefill(b, more), dt + " second prompt");
            int t = rnd.nextInt(512);
            ReferenceFixturesTest.assertClose(ref.decode(List.of(a), new int[]{t})[0], dev.decode(List.of(b), new int[]{t})[0],
                    dt + " decode after device prefill");
        }
    }

    private static SequenceState roundTrip(SequenceState s, MiniMaxModel model) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        s.writeTo(new DataOutputStream(bytes));
        return SequenceState.readFrom(new DataInputStream(new ByteArrayInputStream(bytes.toByteArray())), model.config());
    }
}
