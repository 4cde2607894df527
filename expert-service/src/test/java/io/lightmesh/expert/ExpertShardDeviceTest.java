package io.lightmesh.expert;

import io.lightmesh.engine.backend.opencl.OpenClException;
import io.lightmesh.engine.backend.opencl.OpenClOps;
import io.lightmesh.engine.backend.opencl.ResidentOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.MeshModel;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * An expert shard on a device (real OpenCL: PoCL on the CPU in CI), by the device's own count of bytes allocated:
 * each held pair is uploaded once (not once by the model's in-process experts and again by the shard's device set),
 * the model loaded for a shard puts none of its experts on the device, a load adds one copy per new pair and a
 * refused one (no free slot) adds nothing, and an unload frees the pair's buffers; so a shard's weight memory is at
 * most its slots times one copy. Its answers match the host path.
 */
class ExpertShardDeviceTest {
    @TempDir static Path dir;
    static OpenClOps ops;
    static ResidentOps device;
    static TinyModel host; // the same checkpoint on the reference backend

    @BeforeAll
    static void open() throws Exception {
        try {
            ops = OpenClOps.create(OpenClOps.Preference.valueOf(System.getProperty("lightmesh.opencl.preference", "GPU_THEN_CPU")));
        } catch (OpenClException e) {
            String req = System.getProperty("LIGHTMESH_REQUIRE_OPENCL", System.getenv("LIGHTMESH_REQUIRE_OPENCL"));
            if ("1".equals(req) || "true".equalsIgnoreCase(req)) throw e;
            Assumptions.abort("no OpenCL device: " + e.getMessage());
        }
        device = ops.resident();
        Assumptions.assumeTrue(device != null, "the OpenCL backend has no resident path here");
        host = new TinyModel(dir.resolve("model")); // writes the checkpoint (seed 5, F32)
    }

    @AfterAll
    static void close() {
        if (host != null) host.model.close();
        if (ops != null) ops.close();
    }

    @Test
    void eachHeldPairIsOnTheDeviceOnceAndUnloadingFreesIt() throws Exception {
        long b0 = device.deviceBytes();
        MeshModel eager = MeshModel.load(dir.resolve("model"), ops, true);
        long withExperts = device.deviceBytes() - b0;
        long b1 = device.deviceBytes();
        MeshModel model = MeshModel.load(dir.resolve("model"), ops, false);
        long withoutExperts = device.deviceBytes() - b1;
        int L = model.config().numLayers(), E = model.config().numExperts();
        long copy = ExpertShard.expertBytes(model);
        assertEquals((long) L * E * copy, withExperts - withoutExperts,
                "a model loaded for a shard (or remote experts) puts none of its own experts on the device");
        eager.model().close();

        long start = device.deviceBytes();
        ExpertShard shard = new ExpertShard(ExpertPlacement.Shard.of("G", "127.0.0.1:1", Map.of(0, new int[] {0, 1}, 1, new int[] {2})),
                model, OpenTelemetry.noop(), 4);
        try {
            assertEquals("device-grouped", shard.compute());
            assertEquals(3 * copy, device.deviceBytes() - start, "three pairs held: three copies, each uploaded once");
            shard.load(Map.of(1, new int[] {3}), 1);
            assertEquals(4 * copy, device.deviceBytes() - start);
            assertThrows(ExpertShard.SlotsExhaustedException.class, () -> shard.load(Map.of(2, new int[] {0}), 2));
            assertEquals(4 * copy, device.deviceBytes() - start, "a load over the slots uploads nothing");

            // batches on the device equal the host path (reference backend, same checkpoint)
            // (decode-size batches through the matrix-vector MoE kernels, larger ones grouped: both counted)
            long small = 0, grouped = 0;
            for (int seed = 0; seed < 3; seed++) {
                TinyModel.Call c = host.call(40 + seed, 0, 5 + 9 * seed);
                ExpertBatch0 b = new ExpertBatch0(c);
                io.lightmesh.proto.v1.ExpertBatch masked = b.masked((t, e) -> e <= 1);
                long slots = masked.getExpertsList().stream().filter(e -> e >= 0).count();
                if (slots > io.lightmesh.engine.model.DeviceExperts.SMALL_SLOTS) grouped++;
                else if (slots > 0) small++;
                float[] got = host.floats(shard.compute(masked).getCombined(), c.n());
                float[] want = b.hostMasked((t, e) -> e <= 1);
                double err = 0, ref = 0;
                for (int i = 0; i < want.length; i++) { err += (got[i] - want[i]) * (got[i] - want[i]); ref += want[i] * want[i]; }
                assertTrue(Math.sqrt(err) <= 1e-4 * Math.sqrt(ref) + 1e-6, "device vs host, relative error " + Math.sqrt(err / Math.max(ref, 1e-30)));
            }
            assertTrue(small >= 1 && grouped >= 1, small + " small, " + grouped + " grouped batches");
            assertEquals(new io.lightmesh.engine.model.DeviceExperts.Paths(small, grouped), shard.devicePaths());
            long afterBatches = device.deviceBytes(); // plus both paths' scratch
            shard.unload(Map.of(0, new int[] {0, 1}), 3, 5_000);
            assertEquals(afterBatches - 2 * copy, device.deviceBytes(), "unloading frees the pairs' device buffers");
            shard.load(Map.of(0, new int[] {1}), 4);
            assertEquals(afterBatches - copy, device.deviceBytes(), "loaded again: one copy again");
        } finally {
            shard.close();
        }
        assertEquals(start, device.deviceBytes(), "a closed shard leaves nothing on the device");
        model.model().close();
    }

    /**
     * An f16 checkpoint: the device widens f16 weights to fp32, so one copy takes 4 bytes an element there, twice its
     * size in the file. The shard's copy size (ExpertShardInfo.expert_bytes, the unit of lightmesh.expert-memory-gib)
     * is what the device allocates for it, and a memory budget of two copies gives two slots, not four.
     */
    @Test
    void anF16CopyCountsAsTheDeviceHoldsIt() throws Exception {
        Path f16 = dir.resolve("model-f16");
        SyntheticCheckpoint.write(f16, SyntheticCheckpoint.Shape.tiny(), DType.F16, 5, false);
        MeshModel model = MeshModel.load(f16, ops, false);
        try {
            long h = model.config().hiddenSize(), I = model.config().intermediateSize();
            long copy = ExpertShard.expertBytes(model);
            assertEquals(3 * h * I * 4, copy, "an f16 expert copy on the device is fp32: 4 bytes an element");
            assertEquals(2, ExpertShard.slotCapacity(model, java.util.OptionalInt.empty(), java.util.OptionalLong.of(2 * copy + copy / 2)));
            long start = device.deviceBytes();
            ExpertShard shard = new ExpertShard(ExpertPlacement.Shard.of("F", "127.0.0.1:1", Map.of(0, new int[] {0, 1})),
                    model, OpenTelemetry.noop(), 2);
            try {
                assertEquals("device-grouped", shard.compute());
                assertEquals(2 * copy, device.deviceBytes() - start, "two f16 pairs held: what the device allocated is two reported copies");
                assertEquals(copy, shard.describe().getExpertShard().getExpertBytes());
            } finally {
                shard.close();
            }
        } finally {
            model.model().close();
        }
    }

    /**
     * The forms of a shard on a device together (the priority gate, one batch at a time at the device, decode batches on
     * the transport thread of the shard's own event loop when the device is free): a decode stream and a prefill stream
     * sending at once get every answer equal to the host path's (1e-4), decode and prefill batches both computed.
     */
    @Test
    void aDeviceShardWithItsGateAndInlineDecodeAnswersMixedTrafficAsTheHost() throws Exception {
        MeshModel model = MeshModel.load(dir.resolve("model"), ops, false);
        ExpertShard shard = new ExpertShard(ExpertPlacement.Shard.of("M", "127.0.0.1:1", Map.of(0, new int[] {0, 1, 2, 3}, 1, new int[] {0, 1, 2, 3})),
                model, OpenTelemetry.noop(), Integer.MAX_VALUE, 2, 64, 0, 20, true);
        io.grpc.Server server = shard.serve("127.0.0.1", 0);
        io.grpc.ManagedChannel ch = io.lightmesh.mesh.Grpc.channel("127.0.0.1:" + server.getPort());
        try {
            java.util.concurrent.LinkedBlockingQueue<io.lightmesh.proto.v1.ExpertResult> answers = new java.util.concurrent.LinkedBlockingQueue<>();
            io.grpc.stub.StreamObserver<io.lightmesh.proto.v1.ExpertResult> collect = new io.grpc.stub.StreamObserver<>() {
                @Override public void onNext(io.lightmesh.proto.v1.ExpertResult r) { answers.add(r); }
                @Override public void onError(Throwable t) { answers.add(io.lightmesh.proto.v1.ExpertResult.newBuilder().setCallId(-1).build()); }
                @Override public void onCompleted() {}
            };
            var decode = io.lightmesh.proto.v1.ExpertGrpc.newStub(ch).computeStream(collect);
            var prefill = io.lightmesh.proto.v1.ExpertGrpc.newStub(ch).computeStream(collect);
            Map<Long, TinyModel.Call> calls = new java.util.HashMap<>();
            for (int i = 0; i < 12; i++) {
                TinyModel.Call d = host.call(60 + i, i % 2, 1 + i % 3), p = host.call(80 + i, i % 2, 24 + i);
                calls.put(100L + i, d);
                calls.put(200L + i, p);
                decode.onNext(host.batch(d, 100 + i).toBuilder().setCallClass(io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE).build());
                prefill.onNext(host.batch(p, 200 + i).toBuilder().setCallClass(io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_PREFILL).build());
            }
            for (int i = 0; i < 24; i++) {
                io.lightmesh.proto.v1.ExpertResult r = answers.poll(60, java.util.concurrent.TimeUnit.SECONDS);
                org.junit.jupiter.api.Assertions.assertNotNull(r, "answer " + i);
                TinyModel.Call c = calls.remove(r.getCallId());
                org.junit.jupiter.api.Assertions.assertNotNull(c, "an answer to a batch sent once: " + r.getCallId() + " " + r.getError());
                float[] got = host.floats(r.getCombined(), c.n()), want = host.inProcess(c);
                double err = 0, ref = 0;
                for (int j = 0; j < want.length; j++) { err += (got[j] - want[j]) * (got[j] - want[j]); ref += want[j] * want[j]; }
                assertTrue(Math.sqrt(err) <= 1e-4 * Math.sqrt(ref) + 1e-6, "batch " + r.getCallId() + ": relative error " + Math.sqrt(err / Math.max(ref, 1e-30)));
            }
            assertTrue(calls.isEmpty());
            ExpertShard.GateStats g = shard.gateStats();
            assertEquals(0, g.gate().held(), "every permit given back");
            decode.onCompleted();
            prefill.onCompleted();
        } finally {
            io.lightmesh.mesh.Grpc.shutdown(ch);
            io.lightmesh.mesh.Grpc.shutdown(server);
            shard.close();
            model.model().close();
        }
    }

    /** A call restricted to the slots a shard holds: the batch (others -1), and the host's answer for those slots. */
    record ExpertBatch0(TinyModel.Call c) {
        io.lightmesh.proto.v1.ExpertBatch masked(java.util.function.BiPredicate<Integer, Integer> mine) {
            io.lightmesh.proto.v1.ExpertBatch.Builder b = host.batch(c, 1).toBuilder().clearExperts();
            for (int i = 0; i < c.n() * host.k; i++) b.addExperts(mine.test(i / host.k, c.experts()[i]) ? c.experts()[i] : -1);
            return b.build();
        }

        float[] hostMasked(java.util.function.BiPredicate<Integer, Integer> mine) {
            int[] ex = c.experts().clone();
            float[] w = c.weights().clone();
            for (int i = 0; i < ex.length; i++) if (!mine.test(i / host.k, ex[i])) { w[i] = 0f; }
            return host.inProcess(new TinyModel.Call(c.layer(), c.n(), c.x(), ex, w));
        }
    }
}
