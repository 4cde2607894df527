package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.expert.ExpertShard;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

/**
 * bench-serve: drives the mesh like vLLM's serving benchmark (fixed concurrency or a Poisson rate, fixed prompt and
 * output lengths, ignore_eos) and the in-process engine on the same requests; reports TTFT, TPOT, ITL, end-to-end
 * latency (mean, p50, p90, p99), request and token throughput, goodput under TTFT/TPOT limits, state bytes per
 * request, and (embedded mesh with remote experts) the expert call time per layer.
 *
 * <p>Options: --model DIR (default: a synthetic model written to a temp dir, --shape tiny|medium|small|100m) or --target HOST:PORT
 * (a running mesh; no in-process comparison), --experts N (embedded: 0 = experts inside the workers), --prefill N and
 * --decode N (embedded workers, default 1), --max-batch N, --backend B (embedded and in-process: the same model),
 * --kafka HOST:PORT, --requests N, --concurrency N, --rate R (requests/s; Poisson; overrides concurrency),
 * --prompt-len, --output-len, --ttft-slo-ms, --tpot-slo-ms, --skip-in-process true, --warmup N (requests run through both
 * paths before measuring; default max(8, requests / 2)).
 */
public final class BenchServe {

    record Sample(double ttftMs, double e2eMs, double[] itlMs, int outTokens, long stateBytes, boolean ok, double[] stageMs) {
        Sample(double ttftMs, double e2eMs, double[] itlMs, int outTokens, long stateBytes, boolean ok) {
            this(ttftMs, e2eMs, itlMs, outTokens, stateBytes, ok, null);
        }

        double tpotMs() { return outTokens > 1 ? (e2eMs - ttftMs) / (outTokens - 1) : 0; }
    }

    public static void main(String[] args) throws Exception {
        Flags f = new Flags("bench-serve", "The serving benchmark: a mesh driven like vLLM's benchmark_serving.", System.out, args,
                args.length > 0 && args[0].equals("bench-serve") ? 1 : 0, "target", "model", "shape", "kafka", "experts", "prefill",
                "decode", "max-batch", "backend", "skip-in-process", "warmup", "requests", "concurrency", "rate", "prompt-len",
                "output-len", "ttft-slo-ms", "tpot-slo-ms");
        String target = f.get("target", null), kafka = f.get("kafka", null), shape = f.get("shape", "small"), backend = f.get("backend", "reference");
        int prefillWorkers = f.getInt("prefill", 1), decodeWorkers = f.getInt("decode", 1), maxBatch = f.getInt("max-batch", 0);
        boolean skipInProcess = f.getBoolean("skip-in-process", false);
        int warmup = f.getInt("warmup", -1);
        Path model = f.get("model", null) == null ? null : Path.of(f.get("model", null));
        int requests = f.getInt("requests", 32), concurrency = f.getInt("concurrency", 1), promptLen = f.getInt("prompt-len", 64),
                outputLen = f.getInt("output-len", 32), experts = f.getInt("experts", 2);
        double rate = f.getDouble("rate", 0), ttftSlo = f.getDouble("ttft-slo-ms", 1000), tpotSlo = f.getDouble("tpot-slo-ms", 200);
        if (warmup < 0) warmup = Math.max(8, requests / 2);
        EmbeddedMesh mesh = null;
        if (target == null) {
            if (model == null) {
                model = Files.createTempDirectory("lightmesh-bench-model");
                SyntheticCheckpoint.write(model, shape(shape), DType.F32, 1, false);
            }
            EmbeddedMesh.Options d = EmbeddedMesh.Options.defaults(model);
            mesh = EmbeddedMesh.start(new EmbeddedMesh.Options(model, "127.0.0.1", 0, -1, kafka, null, experts, decodeWorkers, prefillWorkers,
                    16L << 30, maxBatch > 0 ? maxBatch : Math.max(16, concurrency), d.topic(), 4096, outputLen, backend));
            if (!mesh.awaitReady(60_000)) throw new IllegalStateException("mesh not ready: " + mesh.router().health());
            target = mesh.routerTarget();
        }
        int vocab = mesh != null ? mesh.model().config().vocabSize() : 1000;
        List<int[]> prompts = new ArrayList<>();
        SplittableRandom rnd = new SplittableRandom(42);
        for (int i = 0; i < requests; i++) prompts.add(rnd.ints(promptLen, 0, vocab).toArray());
        System.out.printf(Locale.ROOT, "bench-serve: %d requests, prompt %d, output %d, %s; %s%n", requests, promptLen, outputLen,
                rate > 0 ? "Poisson rate " + rate + "/s" : "concurrency " + concurrency,
                mesh == null ? "target " + target : "model " + model + " (" + mesh.model().config().numLayers() + " layers, hidden "
                        + mesh.model().config().hiddenSize() + "), backend " + mesh.model().model().ops().name() + ", " + prefillWorkers
                        + " prefill / " + decodeWorkers + " decode worker(s), " + experts + " expert shard(s)");
        ManagedChannel ch = Grpc.channel(target);
        final int outLen = outputLen;
        try {
            // warm-up of both paths (JIT, connections), so that neither is measured while the other's run compiled the code
            List<int[]> warm = prompts.subList(0, Math.min(warmup, requests));
            final EmbeddedMesh m0 = mesh;
            if (mesh != null && !skipInProcess) run(warm, concurrency, 0, outputLen, p -> inProcess(m0.model(), p, outLen));
            run(warm, concurrency, 0, outputLen, p -> meshRequest(ch, p, outLen));
            if (mesh != null) mesh.remoteExperts().forEach(RemoteExperts::resetStats);
            long steps0 = mesh == null ? 0 : mesh.decoders().stream().mapToLong(d -> d.worker().steps.sum()).sum();
            long stepNanos0 = mesh == null ? 0 : mesh.decoders().stream().mapToLong(d -> d.worker().stepNanos.sum()).sum();
            long rows0 = mesh == null ? 0 : mesh.decoders().stream().mapToLong(d -> d.worker().stepRows.sum()).sum();
            long t0 = System.nanoTime();
            List<Sample> m = run(prompts, concurrency, rate, outputLen, p -> meshRequest(ch, p, outLen));
            report("mesh (" + (mesh == null ? target : experts == 0 ? "experts in decode worker" : experts + " remote expert shards") + ")",
                    m, (System.nanoTime() - t0) / 1e9, ttftSlo, tpotSlo);
            if (mesh != null) {
                long steps = mesh.decoders().stream().mapToLong(d -> d.worker().steps.sum()).sum() - steps0;
                long nanos = mesh.decoders().stream().mapToLong(d -> d.worker().stepNanos.sum()).sum() - stepNanos0;
                long rows = mesh.decoders().stream().mapToLong(d -> d.worker().stepRows.sum()).sum() - rows0;
                if (steps > 0) System.out.printf(Locale.ROOT, "  decode steps: %d, mean %.2f ms a step (forward pass and sampling), mean batch %.1f%n",
                        steps, nanos / 1e6 / steps, (double) rows / steps);
            }
            if (mesh != null && !mesh.remoteExperts().isEmpty()) {
                // remoteExperts(): the decode workers' executors first, then the prefill workers'
                for (int i = 0; i < mesh.remoteExperts().size(); i++) {
                    String who = i < decodeWorkers ? "decode worker " + i : "prefill worker " + (i - decodeWorkers);
                    double[] rtt = mesh.remoteExperts().get(i).meanCallMicrosPerLayer();
                    double[] cmp = mesh.remoteExperts().get(i).meanComputeMicrosPerLayer();
                    StringBuilder sb = new StringBuilder();
                    double sum = 0;
                    int n = 0;
                    for (int l = 0; l < rtt.length; l++) {
                        if (Double.isNaN(rtt[l])) continue;
                        sb.append(String.format(Locale.ROOT, " L%d %.0f/%.0f", l, rtt[l], rtt[l] - cmp[l]));
                        sum += rtt[l] - cmp[l];
                        n++;
                    }
                    System.out.printf(Locale.ROOT, "  expert calls from the %s, per layer: round trip / added cost (round trip - shard compute), us:%s%n"
                            + "  mean added cost per layer's expert call: %.0f us%n", who, sb, n == 0 ? 0 : sum / n);
                }
                for (RemoteExperts r : mesh.remoteExperts()) {
                    if (r.extraChunks() > 0) System.out.printf(Locale.ROOT, "  %s expert calls: %d extra batches from splitting into chunks of %d rows%n",
                            r.settings().callClass(), r.extraChunks(), r.settings().chunkRows());
                }
                for (var e : mesh.experts()) {
                    ExpertShard.GateStats g = e.worker().gateStats();
                    if (g != null) System.out.printf(Locale.ROOT, "  shard %s priority gate (whole run): decode batches ahead of waiting prefill %d, prefill admitted by age %d, "
                                    + "waited for the device decode %.1f ms, prefill %.1f ms in all; decode batches computed on the transport thread %d%n",
                            e.worker().id(), g.gate().decodeOvertakes(), g.gate().prefillAged(), g.decodeWaitUs() / 1e3, g.prefillWaitUs() / 1e3, g.inlined());
                }
            }
            if (mesh != null && !skipInProcess) {
                MeshModel mm = mesh.model();
                long t1 = System.nanoTime();
                List<Sample> ip = run(prompts, concurrency, rate, outputLen, p -> inProcess(mm, p, outLen));
                report("in-process engine (one thread per request, no batching)", ip, (System.nanoTime() - t1) / 1e9, ttftSlo, tpotSlo);
            }
        } finally {
            Grpc.shutdown(ch);
            if (mesh != null) mesh.close();
        }
    }

    /**
     * The synthetic shapes: tiny (hidden 64, 8 layers, 4 experts: overhead-bound), medium (hidden 256, 8 layers,
     * 8 experts of 512, vocab 4096: a few ms a step on one core), small (hidden 512, 16 layers, 8 experts of 1024).
     */
    static SyntheticCheckpoint.Shape shape(String name) {
        return switch (name) {
            case "tiny" -> SyntheticCheckpoint.Shape.tiny();
            case "medium" -> new SyntheticCheckpoint.Shape(4096, 256, 8, 4, 2, 64, 32, 8, 2, 512, 64);
            case "small" -> new SyntheticCheckpoint.Shape(4096, 512, 16, 8, 2, 64, 32, 8, 2, 1024, 64);
            // EngineBench's 100m preset (~147M parameters): big enough for a GPU to matter
            case "100m" -> new SyntheticCheckpoint.Shape(32000, 768, 8, 8, 2, 96, 48, 8, 2, 512, 256);
            default -> throw new IllegalArgumentException("--shape tiny|medium|small|100m, got " + name);
        };
    }

    interface Request { Sample run(int[] prompt) throws Exception; }

    static List<Sample> run(List<int[]> prompts, int concurrency, double rate, int outputLen, Request r) throws Exception {
        ExecutorService pool = Executors.newCachedThreadPool();
        Semaphore slots = new Semaphore(rate > 0 ? Integer.MAX_VALUE : concurrency);
        SplittableRandom arrivals = new SplittableRandom(7);
        List<Future<Sample>> fs = new ArrayList<>();
        for (int[] p : prompts) {
            if (rate > 0) Thread.sleep((long) (-Math.log(1 - arrivals.nextDouble()) / rate * 1000));
            slots.acquire();
            fs.add(pool.submit(() -> {
                try { return r.run(p); } finally { slots.release(); }
            }));
        }
        List<Sample> out = new ArrayList<>();
        for (Future<Sample> f : fs) out.add(f.get(30, TimeUnit.MINUTES));
        pool.shutdown();
        return out;
    }

    static GenerateRequest request(int[] prompt, int outputLen) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int t : prompt) ids.addIds(t);
        return GenerateRequest.newBuilder().setTokenIds(ids).setReturnTokenIds(true)
                .setSampling(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(outputLen).setIgnoreEos(true)).build();
    }

    static Sample meshRequest(ManagedChannel ch, int[] prompt, int outputLen) {
        long t0 = System.nanoTime(), last = t0;
        double ttft = -1;
        List<Double> itl = new ArrayList<>();
        int n = 0;
        long bytes = 0;
        double[] stages = null;
        try {
            Iterator<GenerateChunk> it = InferenceGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.MINUTES).generateStream(request(prompt, outputLen));
            while (it.hasNext()) {
                GenerateChunk c = it.next();
                long now = System.nanoTime();
                if (c.getTokenIdsCount() > 0) {
                    if (ttft < 0) ttft = (now - t0) / 1e6;
                    else itl.add((now - last) / 1e6);
                    last = now;
                    n += c.getTokenIdsCount();
                }
                if (c.hasStats()) {
                    bytes = c.getStats().getStateBytes();
                    stages = new double[]{c.getStats().getQueueUs() / 1e3, c.getStats().getPrefillUs() / 1e3, c.getStats().getTransferUs() / 1e3};
                }
            }
            return new Sample(ttft, (System.nanoTime() - t0) / 1e6, itl.stream().mapToDouble(Double::doubleValue).toArray(), n, bytes, true, stages);
        } catch (RuntimeException e) {
            System.err.println("request failed: " + e);
            return new Sample(0, 0, new double[0], 0, 0, false);
        }
    }

    /** The engine's own single-sequence path (Generator): prefill, then one decode step per token. */
    static Sample inProcess(MeshModel m, int[] prompt, int outputLen) {
        io.lightmesh.engine.generate.SamplingParams params =
                new io.lightmesh.engine.generate.SamplingParams(0f, 0, 1f, 0L, outputLen, List.of(), 0, true);
        long t0 = System.nanoTime();
        long[] last = {t0};
        double[] ttft = {-1};
        List<Double> itl = new ArrayList<>();
        int n = Generator.generate(m.model(), m.tokenizer(), prompt, params, step -> {
            long now = System.nanoTime();
            if (ttft[0] < 0) ttft[0] = (now - t0) / 1e6;
            else itl.add((now - last[0]) / 1e6);
            last[0] = now;
        }).tokens().length;
        return new Sample(ttft[0], (System.nanoTime() - t0) / 1e6, itl.stream().mapToDouble(Double::doubleValue).toArray(), n, 0, true);
    }

    static void report(String name, List<Sample> samples, double seconds, double ttftSlo, double tpotSlo) {
        List<Sample> ok = samples.stream().filter(Sample::ok).toList();
        int tokens = ok.stream().mapToInt(Sample::outTokens).sum();
        long good = ok.stream().filter(s -> s.ttftMs() <= ttftSlo && s.tpotMs() <= tpotSlo).count();
        System.out.printf(Locale.ROOT, "%n== %s ==%n  requests %d ok / %d, wall %.2f s%n", name, ok.size(), samples.size(), seconds);
        System.out.printf(Locale.ROOT, "  throughput %.2f req/s, %.1f output tok/s; goodput (TTFT<=%.0f ms, TPOT<=%.0f ms) %.2f req/s%n",
                ok.size() / seconds, tokens / seconds, ttftSlo, tpotSlo, good / seconds);
        line("TTFT ms", ok.stream().mapToDouble(Sample::ttftMs).toArray());
        line("TPOT ms", ok.stream().mapToDouble(Sample::tpotMs).toArray());
        line("ITL ms", ok.stream().flatMapToDouble(s -> Arrays.stream(s.itlMs())).toArray());
        line("E2E ms", ok.stream().mapToDouble(Sample::e2eMs).toArray());
        System.out.printf(Locale.ROOT, "  state bytes moved per request: %.0f%n", ok.stream().mapToLong(Sample::stateBytes).average().orElse(0));
        List<double[]> st = ok.stream().map(Sample::stageMs).filter(java.util.Objects::nonNull).toList();
        if (!st.isEmpty()) {
            System.out.printf(Locale.ROOT, "  inside the mesh, mean ms: queue (admission to prefill start) %.2f, prefill %.2f, state transfer %.2f%n",
                    st.stream().mapToDouble(x -> x[0]).average().orElse(0), st.stream().mapToDouble(x -> x[1]).average().orElse(0),
                    st.stream().mapToDouble(x -> x[2]).average().orElse(0));
        }
    }

    static void line(String what, double[] v) {
        if (v.length == 0) return;
        double[] s = v.clone();
        Arrays.sort(s);
        System.out.printf(Locale.ROOT, "  %-8s mean %8.2f  p50 %8.2f  p90 %8.2f  p99 %8.2f%n", what, Arrays.stream(s).average().orElse(0),
                pct(s, 50), pct(s, 90), pct(s, 99));
    }

    static double pct(double[] sorted, double p) {
        return sorted[Math.min(sorted.length - 1, (int) Math.ceil(p / 100 * sorted.length) - 1)];
    }
}
