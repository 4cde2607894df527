package io.lightmesh.launcher;

import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.mesh.TestKafka;
import io.lightmesh.prefill.PrefillWorker;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.metrics.SdkMeterProvider;
import io.opentelemetry.sdk.metrics.data.MetricData;
import io.opentelemetry.sdk.resources.Resource;
import io.opentelemetry.sdk.testing.exporter.InMemoryMetricReader;
import io.opentelemetry.sdk.testing.exporter.InMemorySpanExporter;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.data.SpanData;
import io.opentelemetry.sdk.trace.export.SimpleSpanProcessor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Collectors;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The mesh end to end: a real Kafka broker (KafkaClusterTestKit, KRaft), real gRPC over loopback between a router,
 * two prefill workers, two decode workers and two expert shards (experts remote), on a seeded synthetic model of
 * the M1 architecture without a tokenizer. Greedy and seeded sampled output must equal the engine's own
 * {@link Generator} (what {@code ./lightmesh generate} runs), token for token.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class MeshEndToEndTest {
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    @RegisterExtension static final TestMesh running = new TestMesh();
    static EmbeddedMesh mesh;
    static InferenceGrpc.InferenceBlockingStub client;
    /** Every service's spans, and each kind of service's metrics, as the OpenTelemetry SDK records them. */
    static final InMemorySpanExporter spans = InMemorySpanExporter.create();
    static final Map<String, InMemoryMetricReader> metrics = new ConcurrentHashMap<>();
    static final List<OpenTelemetrySdk> sdks = new java.util.concurrent.CopyOnWriteArrayList<>();

    /** One SDK per kind of service (its own service.name), all exporting spans to {@link #spans}. */
    static OpenTelemetry telemetry(String service) {
        Resource resource = Resource.getDefault().toBuilder().put("service.name", service).build();
        InMemoryMetricReader reader = InMemoryMetricReader.create();
        metrics.put(service, reader);
        OpenTelemetrySdk sdk = OpenTelemetrySdk.builder()
                .setTracerProvider(SdkTracerProvider.builder().setResource(resource).addSpanProcessor(SimpleSpanProcessor.create(spans)).build())
                .setMeterProvider(SdkMeterProvider.builder().setResource(resource).registerMetricReader(reader).build()).build();
        sdks.add(sdk);
        return sdk;
    }

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model");
        SyntheticCheckpoint.write(model, SyntheticCheckpoint.Shape.tiny(), DType.F32, 11, false);
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, 0, kafka.bootstrapServers(), dir, 2, 2, 2,
                1L << 30, 32, "lightmesh.requests.v1", 64, 32);
        mesh = running.ready(EmbeddedMesh.start(o, MeshEndToEndTest::telemetry));
        client = InferenceGrpc.newBlockingStub(running.channel());
    }

    @AfterAll
    static void stop() throws Exception {
        sdks.forEach(OpenTelemetrySdk::close);
    }

    @AfterEach
    void forgetSpans() { spans.reset(); }

    static int[] prompt(long seed, int len) { return GreedyCases.prompt(seed, len); }

    static GenerateRequest greedy(int[] prompt, int maxNew) { return GreedyCases.greedy(prompt, maxNew); }

    static GenerateRequest sampled(int[] prompt, int maxNew, SamplingParams.Builder sampling) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int t : prompt) ids.addIds(t);
        return GenerateRequest.newBuilder().setTokenIds(ids).setReturnTokenIds(true)
                .setSampling(sampling.setMaxNewTokens(maxNew).setIgnoreEos(true)).build();
    }

    /** What the engine's Generator produces for the same request (experts in-process, no batching). */
    static List<Integer> inProcess(int[] prompt, int maxNew) {
        return GreedyCases.engine(mesh.model().model(), mesh.model().tokenizer(), prompt, maxNew);
    }

    static List<Integer> inProcess(int[] prompt, io.lightmesh.engine.generate.SamplingParams p) {
        int[] t = Generator.generate(mesh.model().model(), mesh.model().tokenizer(), prompt, p, null).tokens();
        return java.util.Arrays.stream(t).boxed().toList();
    }

    static io.lightmesh.engine.generate.SamplingParams engineSampling(float temperature, int topK, float topP, long seed, int maxNew) {
        return new io.lightmesh.engine.generate.SamplingParams(temperature, topK, topP, seed, maxNew, List.of(), 0, true);
    }

    static void awaitNoLiveSequences() throws InterruptedException {
        long until = System.currentTimeMillis() + 10_000;
        while (System.currentTimeMillis() < until) {
            if (mesh.decoders().stream().allMatch(d -> d.worker().liveSequences() == 0 && d.worker().usedBytes() == 0)) return;
            Thread.sleep(50);
        }
        for (var d : mesh.decoders()) {
            assertEquals(0, d.worker().liveSequences(), d.id() + " still holds sequences");
            assertEquals(0, d.worker().usedBytes(), d.id() + " still holds state bytes");
        }
    }

    @Test @Order(1)
    void greedySingleRequestMatchesInProcess() {
        int[] p = prompt(1, 40);
        GenerateResponse r = client.withDeadlineAfter(60, TimeUnit.SECONDS).generate(greedy(p, 24));
        assertEquals(inProcess(p, 24), r.getTokenIdsList());
        assertEquals(FinishReason.FINISH_REASON_LENGTH, r.getFinishReason());
        assertEquals(40, r.getUsage().getPromptTokens());
        assertEquals(24, r.getUsage().getCompletionTokens());
        assertTrue(r.getStats().getStateBytes() > 0, "state bytes moved are reported");
    }

    @Test @Order(1)
    void oneTraceSpansEveryServiceAndTheMetricsAreRecorded() throws Exception {
        spans.reset();
        Map<String, Double> before = metricTotals();
        int[] p = prompt(9, 21);
        int maxNew = 6;
        GenerateResponse r = client.withDeadlineAfter(60, TimeUnit.SECONDS).generate(greedy(p, maxNew).toBuilder().setRequestId("traced-1").build());
        assertEquals(maxNew, r.getTokenIdsCount());
        // the decode worker ends its span when it frees the sequence, just after the last event
        long until = System.currentTimeMillis() + 10_000;
        while (System.currentTimeMillis() < until && spans.getFinishedSpanItems().stream().noneMatch(x -> x.getName().equals("lightmesh.decode"))) Thread.sleep(20);
        SpanData root = spans.getFinishedSpanItems().stream().filter(x -> x.getName().equals("lightmesh.generate")
                && "traced-1".equals(x.getAttributes().get(AttributeKey.stringKey("lightmesh.request_id")))).findFirst().orElseThrow();
        List<SpanData> trace = spans.getFinishedSpanItems().stream().filter(x -> x.getTraceId().equals(root.getTraceId())).toList();
        Set<String> names = trace.stream().map(SpanData::getName).collect(Collectors.toSet());
        for (String n : List.of("lightmesh.generate", "lightmesh.queue publish", "lightmesh.prefill", "lightmesh.state send",
                "lightmesh.state receive", "lightmesh.decode", "lightmesh.decode step", "lightmesh.expert compute")) {
            assertTrue(names.contains(n), "trace has " + n + ": " + names);
        }
        Set<String> services = trace.stream().map(x -> x.getResource().getAttribute(AttributeKey.stringKey("service.name"))).collect(Collectors.toSet());
        assertEquals(Set.of("lightmesh-router", "lightmesh-prefill", "lightmesh-decode", "lightmesh-expert"), services);
        Map<String, SpanData> byId = trace.stream().collect(Collectors.toMap(SpanData::getSpanId, x -> x));
        SpanData prefill = one(trace, "lightmesh.prefill");
        assertEquals("lightmesh.queue publish", byId.get(prefill.getParentSpanId()).getName(), "Kafka headers carried the context");
        assertEquals("lightmesh.state send", byId.get(one(trace, "lightmesh.state receive").getParentSpanId()).getName(), "gRPC metadata carried it");
        Set<String> expertParents = trace.stream().filter(x -> x.getName().equals("lightmesh.expert compute"))
                .map(x -> byId.get(x.getParentSpanId()).getName()).collect(Collectors.toSet());
        assertEquals(Set.of("lightmesh.prefill", "lightmesh.decode step"), expertParents, "expert calls of prefill and of decode steps");
        assertEquals(maxNew - 1, trace.stream().filter(x -> x.getName().equals("lightmesh.decode step")).count(), "one step per token after the first");

        Map<String, Double> after = metricTotals();
        var c = mesh.model().config();
        assertEquals(1.0, delta(before, after, "lightmesh-router/lightmesh.request.time_to_first_token"), "one TTFT sample");
        assertEquals(1.0, delta(before, after, "lightmesh-router/lightmesh.request.time_per_output_token"), "one TPOT sample");
        assertTrue(after.containsKey("lightmesh-router/lightmesh.router.queue.depth"), "queue depth gauge");
        assertEquals((double) (maxNew - 1), delta(before, after, "lightmesh-decode/lightmesh.decode.batch.size"), "a batch size per step");
        assertEquals((double) r.getStats().getStateBytes(), delta(before, after, "lightmesh-decode/lightmesh.state.transferred"));
        assertEquals((double) p.length * c.numLayers() * c.topK(), delta(before, after, "lightmesh-prefill/lightmesh.moe.tokens"),
                "every prompt token counted once per layer per chosen expert");
        assertEquals((double) (maxNew - 1) * c.numLayers() * c.topK(), delta(before, after, "lightmesh-decode/lightmesh.moe.tokens"));
        MetricData moe = metrics.get("lightmesh-decode").collectAllMetrics().stream().filter(m -> m.getName().equals("lightmesh.moe.tokens")).findFirst().orElseThrow();
        assertTrue(moe.getLongSumData().getPoints().stream().allMatch(pt -> pt.getAttributes().get(AttributeKey.longKey("lightmesh.layer")) != null
                && pt.getAttributes().get(AttributeKey.longKey("lightmesh.expert")) != null), "tokens per expert per layer");
    }

    static SpanData one(List<SpanData> trace, String name) {
        List<SpanData> found = trace.stream().filter(x -> x.getName().equals(name)).toList();
        assertEquals(1, found.size(), name + " once");
        return found.get(0);
    }

    /** "service/metric" -> sum (counters), count (histograms) or value (gauges), over all points. */
    static Map<String, Double> metricTotals() {
        Map<String, Double> out = new java.util.HashMap<>();
        metrics.forEach((service, reader) -> {
            for (MetricData m : reader.collectAllMetrics()) {
                double v = switch (m.getType()) {
                    case LONG_SUM -> m.getLongSumData().getPoints().stream().mapToDouble(x -> x.getValue()).sum();
                    case DOUBLE_SUM -> m.getDoubleSumData().getPoints().stream().mapToDouble(x -> x.getValue()).sum();
                    case HISTOGRAM -> m.getHistogramData().getPoints().stream().mapToDouble(x -> x.getCount()).sum();
                    case LONG_GAUGE -> m.getLongGaugeData().getPoints().stream().mapToDouble(x -> x.getValue()).sum();
                    case DOUBLE_GAUGE -> m.getDoubleGaugeData().getPoints().stream().mapToDouble(x -> x.getValue()).sum();
                    default -> 0;
                };
                out.put(service + "/" + m.getName(), v);
            }
        });
        return out;
    }

    static double delta(Map<String, Double> before, Map<String, Double> after, String key) {
        assertTrue(after.containsKey(key), "metric " + key + " recorded: " + after.keySet());
        return after.get(key) - before.getOrDefault(key, 0.0);
    }

    @Test @Order(2)
    void sixteenConcurrentMixedLengthsMatchInProcess() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(16);
        try {
            List<Future<List<Integer>>> got = new ArrayList<>();
            List<List<Integer>> want = new ArrayList<>();
            for (int i = 0; i < 16; i++) {
                int[] p = prompt(100 + i, 5 + 9 * i);      // 5 .. 140 tokens: within one block up to several
                int maxNew = 4 + (i * 7) % 29;
                want.add(inProcess(p, maxNew));
                got.add(pool.submit(() -> client.withDeadlineAfter(120, TimeUnit.SECONDS).generate(greedy(p, maxNew)).getTokenIdsList()));
            }
            for (int i = 0; i < 16; i++) assertEquals(want.get(i), got.get(i).get(), "request " + i);
        } finally {
            pool.shutdownNow();
        }
        awaitNoLiveSequences();
    }

    @Test @Order(2)
    void seededSamplingMatchesTheEngineGenerator() throws Exception {
        // the prefill worker draws the first token, the decode worker the rest: one seeded sequence of draws all the same
        ExecutorService pool = Executors.newFixedThreadPool(6);
        try {
            List<Future<List<Integer>>> got = new ArrayList<>();
            List<List<Integer>> want = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                int[] p = prompt(200 + i, 7 + 11 * i);
                float temperature = 0.7f + 0.2f * i;
                int topK = i % 2 == 0 ? 0 : 40;
                float topP = i % 3 == 0 ? 1f : 0.9f;
                long seed = 1000L * i + 7;
                want.add(inProcess(p, engineSampling(temperature, topK, topP, seed, 20)));
                SamplingParams.Builder sb = SamplingParams.newBuilder().setTemperature(temperature).setTopK(topK).setTopP(topP).setSeed(seed);
                got.add(pool.submit(() -> client.withDeadlineAfter(120, TimeUnit.SECONDS).generate(sampled(p, 20, sb)).getTokenIdsList()));
            }
            for (int i = 0; i < 6; i++) assertEquals(want.get(i), got.get(i).get(), "request " + i);
            assertFalse(want.get(1).equals(inProcess(prompt(201, 18), engineSampling(0.9f, 40, 0.9f, 99, 20))), "the seed matters");
        } finally {
            pool.shutdownNow();
        }
    }

    @Test @Order(3)
    void textInputWithoutATokenizerIsRejectedClearly() {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                () -> client.generate(GenerateRequest.newBuilder().setPrompt("hello").build()));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("no tokenizer.json"), e.getStatus().getDescription());
        StatusRuntimeException t = assertThrows(StatusRuntimeException.class,
                () -> client.tokenize(TokenizeRequest.newBuilder().setText("hello").build()));
        assertEquals(Status.Code.INVALID_ARGUMENT, t.getStatus().getCode());
        StatusRuntimeException stop = assertThrows(StatusRuntimeException.class,
                () -> client.generate(sampled(new int[]{1, 2}, 4, SamplingParams.newBuilder().addStop("x"))));
        assertEquals(Status.Code.INVALID_ARGUMENT, stop.getStatus().getCode());
    }

    @Test @Order(3)
    void streamingDeliversEveryTokenThenUsage() {
        int[] p = prompt(3, 20);
        Iterator<GenerateChunk> it = InferenceGrpc.newBlockingStub(running.channel()).withDeadlineAfter(60, TimeUnit.SECONDS).generateStream(greedy(p, 12));
        List<Integer> tokens = new ArrayList<>();
        int chunks = 0;
        GenerateChunk last = null;
        while (it.hasNext()) {
            last = it.next();
            tokens.addAll(last.getTokenIdsList());
            chunks++;
        }
        assertEquals(inProcess(p, 12), tokens);
        assertTrue(chunks >= 12, "one chunk per token at least, got " + chunks);
        assertEquals(FinishReason.FINISH_REASON_LENGTH, last.getFinishReason());
        assertEquals(12, last.getUsage().getCompletionTokens());
    }

    @Test @Order(4)
    void invalidRequestIsRejectedClearlyAndOthersAreUnaffected() {
        GenerateRequest bad = greedy(new int[]{1, 2, 99999}, 4);
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.generate(bad));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("99999"), e.getStatus().getDescription());
        StatusRuntimeException none = assertThrows(StatusRuntimeException.class, () -> client.generate(GenerateRequest.getDefaultInstance()));
        assertEquals(Status.Code.INVALID_ARGUMENT, none.getStatus().getCode());
        int[] p = prompt(4, 10);
        assertEquals(inProcess(p, 6), client.generate(greedy(p, 6)).getTokenIdsList());
    }

    @Test @Order(5)
    void cancellingAStreamStopsWorkAndFreesState() throws Exception {
        int[] p = prompt(5, 30);
        Context.CancellableContext ctx = Context.current().withCancellation();
        AtomicBoolean sawTokens = new AtomicBoolean();
        ctx.run(() -> {
            Iterator<GenerateChunk> it = InferenceGrpc.newBlockingStub(running.channel()).generateStream(greedy(p, 100_000));
            for (int i = 0; i < 3 && it.hasNext(); i++) sawTokens.set(it.next().getTokenIdsCount() > 0);
        });
        assertTrue(sawTokens.get());
        ctx.cancel(null);
        awaitNoLiveSequences();
    }

    @Test @Order(6)
    void deadlinePassedEndsTheRequestAndFreesState() throws Exception {
        int[] p = prompt(6, 30);
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                () -> client.withDeadlineAfter(1500, TimeUnit.MILLISECONDS).generate(greedy(p, 100_000)));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
        awaitNoLiveSequences();
    }

    @Test @Order(7)
    void prefillWorkerKilledAfterTakingARequestLosesNothing() {
        AtomicBoolean crashed = new AtomicBoolean();
        for (PrefillWorker w : mesh.prefillers()) {
            w.setHook(t -> {
                if (crashed.compareAndSet(false, true)) throw new PrefillWorker.Crash("killed after taking " + t.getSpec().getRequestId());
            });
        }
        int[] p = prompt(7, 25);
        GenerateResponse r = client.withDeadlineAfter(120, TimeUnit.SECONDS).generate(greedy(p, 10));
        assertTrue(crashed.get(), "a prefill worker took the request and died");
        assertEquals(inProcess(p, 10), r.getTokenIdsList());
    }

    @Test @Order(8)
    void decodeWorkerKilledMidGenerationIsResumedElsewhere() throws Exception {
        int[] p = prompt(8, 33);
        int maxNew = 400;
        Iterator<GenerateChunk> it = InferenceGrpc.newBlockingStub(running.channel()).withDeadlineAfter(120, TimeUnit.SECONDS).generateStream(greedy(p, maxNew));
        List<Integer> tokens = new ArrayList<>();
        GenerateChunk last = null;
        boolean killed = false;
        while (it.hasNext()) {
            last = it.next();
            tokens.addAll(last.getTokenIdsList());
            if (!killed && tokens.size() >= 5) {
                killed = true;
                for (int i = 0; i < mesh.decoders().size(); i++) {
                    if (mesh.decoders().get(i).worker().liveSequences() > 0) mesh.killDecode(i);
                }
            }
        }
        assertTrue(killed);
        assertEquals(1, last.getStats().getResumes(), "resumed once");
        assertEquals(inProcess(p, maxNew), tokens);
    }
}
