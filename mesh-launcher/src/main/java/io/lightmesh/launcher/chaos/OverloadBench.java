package io.lightmesh.launcher.chaos;

import io.lightmesh.launcher.EmbeddedMesh;
import io.opentelemetry.api.OpenTelemetry;

import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Overload, measured: the mesh in this JVM ({@link EmbeddedMesh}: a KRaft broker child process, two expert shards,
 * a decode and a prefill worker, the router with its OpenAI API on HTTP) with an admission limit of {@code limit}
 * requests in flight. First {@code limit} clients for {@code baseline} seconds (the latency of a full but not
 * overloaded router), then {@code factor x limit} clients for {@code seconds}: each sends its next request as soon as
 * the last one was answered; a client answered 429 sends again after 100 ms. Prints: requests sent and answered
 * (200 right / wrong, 429 with and without Retry-After, anything else, hung past the deadline), nothing lost when
 * sent = answered; the admitted requests' latency (p50/p99) beside the baseline's; how fast a 429 came (p50/p99/max);
 * the heap's peak after each collection against its cap (-Xmx). Greedy requests, each checked against the in-process
 * engine ({@link Expected}).
 *
 * <p>{@code java -cp mesh-launcher/target/lightmesh-mesh.jar io.lightmesh.launcher.chaos.OverloadBench
 * [model-dir] [limit] [factor] [seconds] [baseline-seconds] [max-tokens]}; defaults models/demo 8 10 60 20 16.
 */
public final class OverloadBench {
    private OverloadBench() {}

    /** What one stretch of load gave. */
    record Stretch(int clients, int seconds, List<ChaosLoad.Outcome> outcomes, int sent) {
        List<ChaosLoad.Outcome> of(ChaosLoad.Outcome.Kind k) { return outcomes.stream().filter(o -> o.kind() == k).toList(); }

        List<ChaosLoad.Outcome> refused() {
            return outcomes.stream().filter(o -> o.kind() == ChaosLoad.Outcome.Kind.FAILED && o.detail().startsWith("HTTP 429")).toList();
        }

        static long pct(List<ChaosLoad.Outcome> os, double q) {
            long[] ms = os.stream().mapToLong(ChaosLoad.Outcome::millis).sorted().toArray();
            return ms.length == 0 ? 0 : ms[Math.min(ms.length - 1, (int) Math.ceil(q * ms.length) - 1)];
        }
    }

    public static void main(String[] args) throws Exception {
        Path model = Path.of(args.length > 0 ? args[0] : "models/demo").toAbsolutePath();
        int limit = args.length > 1 ? Integer.parseInt(args[1]) : 8;
        int factor = args.length > 2 ? Integer.parseInt(args[2]) : 10;
        int seconds = args.length > 3 ? Integer.parseInt(args[3]) : 60;
        int baseline = args.length > 4 ? Integer.parseInt(args[4]) : 20;
        int maxTokens = args.length > 5 ? Integer.parseInt(args[5]) : 16;
        Path work = Files.createTempDirectory("lightmesh-overload");
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, 0, null, work, 2, 1, 1, 1L << 30, 32,
                "lightmesh.requests.v1", limit, 256, "reference");
        System.out.printf(Locale.ROOT, "overload: %s, admission limit %d, %d clients for %d s after %d clients for %d s; heap cap %d MiB; %d cores%n",
                model.getFileName(), limit, factor * limit, seconds, limit, baseline, Runtime.getRuntime().maxMemory() >> 20,
                Runtime.getRuntime().availableProcessors());
        HeapWatch heap = new HeapWatch();
        try (EmbeddedMesh mesh = EmbeddedMesh.start(o, s -> OpenTelemetry.noop());
             Expected expected = new Expected(model, "reference")) {
            if (!mesh.awaitReady(120_000)) throw new IllegalStateException("mesh not ready: " + mesh.router().health());
            ChaosLoad load = new ChaosLoad(expected, model.getFileName().toString(), maxTokens, 120_000);
            List<String> url = List.of("http://127.0.0.1:" + mesh.httpPort());
            run(load, url, limit, 5, "warm-up");                        // JIT and first expert links
            Stretch base = run(load, url, limit, baseline, "baseline");
            heap.reset();
            Stretch over = run(load, url, factor * limit, seconds, "overload");
            long load1 = Math.round(Double.parseDouble(Files.readString(Path.of("/proc/loadavg")).split(" ")[0]) * 10);
            print(base, over, heap, limit, load1 / 10.0);
        } finally {
            heap.close();
        }
        System.exit(0);
    }

    static Stretch run(ChaosLoad load, List<String> urls, int clients, int seconds, String name) throws InterruptedException {
        List<ChaosLoad.Outcome> outcomes = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger seq = new AtomicInteger();
        long until = System.currentTimeMillis() + seconds * 1000L;
        ExecutorService pool = Executors.newFixedThreadPool(clients);
        for (int c = 0; c < clients; c++) {
            pool.submit(() -> {
                while (System.currentTimeMillis() < until) {
                    ChaosLoad.Outcome x = load.run(seq.getAndIncrement(), name, () -> urls);
                    outcomes.add(x);
                    if (x.kind() == ChaosLoad.Outcome.Kind.FAILED) {
                        try { Thread.sleep(100); } catch (InterruptedException e) { return; }
                    }
                }
            });
        }
        pool.shutdown();
        if (!pool.awaitTermination(seconds + 180L, TimeUnit.SECONDS)) pool.shutdownNow();
        return new Stretch(clients, seconds, new ArrayList<>(outcomes), seq.get());
    }

    static void print(Stretch base, Stretch over, HeapWatch heap, int limit, double loadAvg) {
        for (Stretch s : List.of(base, over)) {
            List<ChaosLoad.Outcome> ok = s.of(ChaosLoad.Outcome.Kind.RIGHT), refused = s.refused();
            long withRetryAfter = refused.stream().filter(r -> r.detail().contains("Retry-After")).count();
            long other = s.outcomes().size() - ok.size() - s.of(ChaosLoad.Outcome.Kind.WRONG).size() - refused.size() - s.of(ChaosLoad.Outcome.Kind.HUNG).size();
            System.out.printf(Locale.ROOT, "%s: %d clients, %d s: sent %d, answered %d (lost %d): 200 right %d (%.1f/s), wrong %d, 429 %d (with Retry-After %d), other %d, hung %d%n",
                    s == base ? "baseline" : "overload", s.clients(), s.seconds(), s.sent(), s.outcomes().size(), s.sent() - s.outcomes().size(),
                    ok.size(), ok.size() / (double) s.seconds(), s.of(ChaosLoad.Outcome.Kind.WRONG).size(), refused.size(), withRetryAfter, other,
                    s.of(ChaosLoad.Outcome.Kind.HUNG).size());
            System.out.printf(Locale.ROOT, "  admitted latency ms p50 %d p99 %d; 429 latency ms p50 %d p99 %d max %d%n",
                    Stretch.pct(ok, 0.5), Stretch.pct(ok, 0.99), Stretch.pct(refused, 0.5), Stretch.pct(refused, 0.99), Stretch.pct(refused, 1.0));
            s.outcomes().stream().filter(x -> x.kind() != ChaosLoad.Outcome.Kind.RIGHT && !x.detail().startsWith("HTTP 429")).limit(5)
                    .forEach(x -> System.out.println("  " + x.kind() + ": " + x.detail()));
        }
        System.out.printf(Locale.ROOT, "heap (whole mesh in this JVM): peak after GC %d MiB, peak used %d MiB, cap %d MiB; load average %.1f%n",
                heap.peakAfterGc() >> 20, heap.peakUsed() >> 20, Runtime.getRuntime().maxMemory() >> 20, loadAvg);
    }

    /** The heap's peak, sampled every 100 ms: used, and what remained after each collection (the live set). */
    static final class HeapWatch implements AutoCloseable {
        private final AtomicLong peakUsed = new AtomicLong(), peakAfterGc = new AtomicLong();
        private final Thread thread = Thread.ofPlatform().daemon().name("heap-watch").start(this::loop);

        private void loop() {
            while (!Thread.currentThread().isInterrupted()) {
                long used = 0, after = 0;
                for (MemoryPoolMXBean p : ManagementFactory.getMemoryPoolMXBeans()) {
                    if (p.getType() != MemoryType.HEAP) continue;
                    used += p.getUsage().getUsed();
                    if (p.getCollectionUsage() != null) after += p.getCollectionUsage().getUsed();
                }
                long u = used, a = after;
                peakUsed.accumulateAndGet(u, Math::max);
                peakAfterGc.accumulateAndGet(a, Math::max);
                try { Thread.sleep(100); } catch (InterruptedException e) { return; }
            }
        }

        void reset() { peakUsed.set(0); peakAfterGc.set(0); }

        long peakUsed() { return peakUsed.get(); }

        long peakAfterGc() { return peakAfterGc.get(); }

        @Override public void close() { thread.interrupt(); }
    }
}
