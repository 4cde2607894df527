package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.lightmesh.engine.backend.opencl.OpenClException;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.model.ForwardPath;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.expert.ExpertShard;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.prefill.PrefillWorker;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.metrics.SdkMeterProvider;
import io.opentelemetry.sdk.metrics.data.LongPointData;
import io.opentelemetry.sdk.testing.exporter.InMemoryMetricReader;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The mesh on the OpenCL backend (PoCL in CI, a GPU where there is one): every prefill and decode worker runs the
 * device-resident path, with experts in-process and with two remote expert shards (which then compute on the
 * device too, and the workers alternate two micro-batches); each says so in its log, Worker.Describe (WorkerInfo
 * 30-34), health data and the gauge {@code lightmesh.worker.path}; and the mesh's greedy output, several requests
 * batched together, equals the in-process engine's token for token.
 */
class MeshDevicePathTest {
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(2);
    static Path model;
    static final Map<String, InMemoryMetricReader> metrics = new ConcurrentHashMap<>();
    static final List<OpenTelemetrySdk> sdks = new java.util.concurrent.CopyOnWriteArrayList<>();

    static OpenTelemetry telemetry(String service) {
        InMemoryMetricReader reader = InMemoryMetricReader.create();
        metrics.put(service, reader);
        OpenTelemetrySdk sdk = OpenTelemetrySdk.builder().setMeterProvider(SdkMeterProvider.builder().registerMetricReader(reader).build()).build();
        sdks.add(sdk);
        return sdk;
    }

    @BeforeAll
    static void start() throws Exception {
        model = dir.resolve("model");
        SyntheticCheckpoint.write(model, SyntheticCheckpoint.Shape.tiny(), DType.BF16, 17, false);
    }

    @AfterAll
    static void stop() throws Exception {
        sdks.forEach(OpenTelemetrySdk::close);
    }

    @Test
    void experts_in_process() throws Exception {
        run(0);
    }

    @Test
    void experts_on_two_remote_shards() throws Exception {
        run(2);
    }

    private static void run(int shards) throws Exception {
        metrics.clear();
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, -1, kafka.bootstrapServers(), dir, shards, 1, 1,
                1L << 30, 16, "lightmesh.requests.device" + shards, 64, 32, "opencl");
        EmbeddedMesh mesh;
        try {
            mesh = EmbeddedMesh.start(o, MeshDevicePathTest::telemetry);
        } catch (OpenClException e) {
            String req = System.getProperty("LIGHTMESH_REQUIRE_OPENCL", System.getenv("LIGHTMESH_REQUIRE_OPENCL"));
            if ("1".equals(req)) fail("LIGHTMESH_REQUIRE_OPENCL=1 but no OpenCL device works: " + e.getMessage(), e);
            Assumptions.abort("no OpenCL device: " + e.getMessage());
            return;
        }
        ManagedChannel channel = null;
        try (mesh) {
            assertTrue(mesh.awaitReady(60_000), () -> "mesh not ready: " + mesh.router().health());
            boolean remote = shards > 0;
            ForwardPath want = new ForwardPath(true, true, remote, remote);
            // the path each worker runs: as the engine says, in Worker.Describe, in health data, in the gauge
            PrefillWorker prefill = mesh.prefillers().get(0);
            assertEquals(want, prefill.path());
            assertEquals(Map.of("decode_path", "device-resident", "prefill_path", "device-resident", "experts", remote ? "remote" : "local",
                    "micro_batching", remote), withoutBackend(prefill.pathData()));
            assertTrue(String.valueOf(prefill.pathData().get("backend")).startsWith("opencl on "), "" + prefill.pathData());
            // the kernel forms: with experts in the worker a prefill chunk is routed on the device (the default), with
            // shards the routing is theirs; PoCL has no tensor cores, so the decode products are the v2 kernels
            String kernels = String.valueOf(prefill.pathData().get("device_kernels"));
            assertTrue(kernels.startsWith(remote ? "prefill routing off (remote experts)" : "prefill routing on the device"), kernels);
            assertTrue(kernels.contains("decode products CUDA-core matrix-vector kernels"), kernels);
            var decode = mesh.decoders().get(0);
            assertEquals(want, decode.worker().path());
            WorkerInfo info = describe(decode.address());
            assertEquals("device-resident", info.getDecodePath());
            assertEquals("device-resident", info.getPrefillPath());
            assertEquals(remote, info.getRemoteExperts());
            assertEquals(remote, info.getMicroBatching());
            assertTrue(info.getBackend().startsWith("opencl on "), info.getBackend());
            assertTrue(info.getDeviceKernels().contains("; decode kernels v2"), info.getDeviceKernels());
            assertTrue(info.getDeviceKernels().endsWith(remote ? "decode steps per operation" : "decode steps fused"),
                    info.getDeviceKernels());
            for (EmbeddedMesh.Component<ExpertShard> s : mesh.experts()) {
                WorkerInfo e = describe(s.address());
                assertEquals("device-grouped", e.getExpertCompute(), s.id());
                assertTrue(e.getBackend().startsWith("opencl on "), e.getBackend());
            }
            assertGauge("lightmesh-prefill", "lightmesh.prefill.path", "device-resident", remote);
            assertGauge("lightmesh-decode", "lightmesh.decode.path", "device-resident", remote);
            assertGauge("lightmesh-decode", "lightmesh.device.kernels", info.getDeviceKernels(), remote);
            if (remote) assertGauge("lightmesh-expert", "lightmesh.expert.compute", "device-grouped", null);

            // greedy through the mesh, four requests at once (decode batches of up to 4: two micro-batches with shards)
            channel = Grpc.channel(mesh.routerTarget());
            InferenceGrpc.InferenceBlockingStub client = InferenceGrpc.newBlockingStub(channel);
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<int[]> prompts = new ArrayList<>();
                List<Future<GenerateResponse>> answers = new ArrayList<>();
                for (int i = 0; i < 4; i++) {
                    int[] p = new SplittableRandom(40 + i).ints(i == 0 ? 70 : 9 + 7 * i, 0, 512).toArray();
                    prompts.add(p);
                    answers.add(pool.submit(() -> client.withDeadlineAfter(120, TimeUnit.SECONDS).generate(greedy(p, 12))));
                }
                for (int i = 0; i < 4; i++) {
                    int[] t = Generator.generate(mesh.model().model(), null, prompts.get(i),
                            io.lightmesh.engine.generate.SamplingParams.greedy(12), null).tokens();
                    assertEquals(java.util.Arrays.stream(t).boxed().toList(), answers.get(i).get(180, TimeUnit.SECONDS).getTokenIdsList(),
                            "request " + i + " (" + (remote ? "remote" : "in-process") + " experts)");
                }
            } finally {
                pool.shutdownNow();
            }
            assertTrue(mesh.model().model().decodesOnDevice(), "the in-process engine compared with is on the device path too");
            // greedy rows take the step's argmax: no decode step read a row's logits back
            assertTrue(decodeRows("lightmesh-decode", false) >= 4 * 10, "greedy rows by argmax: " + decodeRows("lightmesh-decode", false));
            assertEquals(0, decodeRows("lightmesh-decode", true), "rows with their logits read back");
        } finally {
            if (channel != null) Grpc.shutdown(channel);
        }
    }

    private static Map<String, Object> withoutBackend(Map<String, Object> m) {
        Map<String, Object> out = new java.util.HashMap<>(m);
        out.remove("backend");
        out.remove("device_kernels");
        return out;
    }

    private static WorkerInfo describe(String address) {
        ManagedChannel ch = Grpc.channel(address);
        try {
            return WorkerGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
        } finally {
            Grpc.shutdown(ch);
        }
    }

    /** The counter lightmesh.decode.rows of {@code service}: rows whose logits were read back ({@code logits}) or not. */
    private static long decodeRows(String service, boolean logits) {
        return metrics.get(service).collectAllMetrics().stream().filter(m -> m.getName().equals("lightmesh.decode.rows"))
                .flatMap(m -> m.getLongSumData().getPoints().stream())
                .filter(p -> Boolean.valueOf(logits).equals(p.getAttributes().get(AttributeKey.booleanKey("lightmesh.decode.logits"))))
                .mapToLong(LongPointData::getValue).sum();
    }

    /** The gauge lightmesh.worker.path of {@code service} has a point of value 1 with {@code key = value}. */
    private static void assertGauge(String service, String key, String value, Boolean microBatching) {
        var points = metrics.get(service).collectAllMetrics().stream().filter(m -> m.getName().equals("lightmesh.worker.path"))
                .flatMap(m -> m.getLongGaugeData().getPoints().stream()).toList();
        assertTrue(points.stream().anyMatch(p -> p.getValue() == 1 && value.equals(p.getAttributes().get(AttributeKey.stringKey(key)))
                && (microBatching == null || microBatching.equals(p.getAttributes().get(AttributeKey.booleanKey("lightmesh.micro_batching"))))),
                service + " gauge points: " + points.stream().map(LongPointData::getAttributes).toList());
    }

    static GenerateRequest greedy(int[] prompt, int maxNew) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int t : prompt) ids.addIds(t);
        return GenerateRequest.newBuilder().setTokenIds(ids).setReturnTokenIds(true)
                .setSampling(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(maxNew).setIgnoreEos(true)).build();
    }
}
