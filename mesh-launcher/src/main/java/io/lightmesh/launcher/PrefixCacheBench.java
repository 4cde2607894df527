package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.prefix.CachedPrefill;
import io.lightmesh.engine.prefix.PrefixCache;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
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
import java.util.concurrent.TimeUnit;

/**
 * The prefix cache's benchmark (a figure, not a test): time to first token of a request sharing a long prefix with an
 * earlier one, against that earlier one's, and the TTFT of each turn of a growing chat, with and without the cache;
 * in-process (the engine's {@link CachedPrefill}, TTFT = prefill + the first token's choice) and through an embedded
 * mesh (client-side TTFT over gRPC streaming: router, Kafka, prefill worker, state transfer, decode).
 *
 * <pre>
 * PrefixCacheBench [--model models/demo] [--backend auto] [--mode both|in-process|mesh] [--prefix 4096] [--suffix 64]
 *                  [--repeat 3] [--turns 8] [--system 256] [--user 64] [--answer 32] [--experts 2] [--kafka HOST:PORT]
 *                  [--prefix-cache-gib 1]   (the mesh's prefill worker; 0: the mesh's figures without a cache)
 * </pre>
 * Prompts are seeded random token ids (the time of a forward pass does not depend on which tokens).
 */
public final class PrefixCacheBench {
    private final Flags f;
    private final int prefix, suffix, repeat, turns, system, user, answer;

    private PrefixCacheBench(Flags f) {
        this.f = f;
        prefix = f.getInt("prefix", 4096);
        suffix = f.getInt("suffix", 64);
        repeat = f.getInt("repeat", 3);
        turns = f.getInt("turns", 8);
        system = f.getInt("system", 256);
        user = f.getInt("user", 64);
        answer = f.getInt("answer", 32);
    }

    public static void main(String[] args) throws Exception {
        Flags f = new Flags("prefix-cache-bench", args, 0, "model", "backend", "mode", "prefix", "suffix", "repeat", "turns",
                "system", "user", "answer", "experts", "kafka", "prefix-cache-gib");
        new PrefixCacheBench(f).run();
    }

    private void run() throws Exception {
        Path model = Path.of(f.get("model", "models/demo"));
        String backend = f.get("backend", "auto"), mode = f.get("mode", "both");
        System.out.printf("# prefix cache bench: model %s, backend %s, prefix %d + suffix %d, %d turns (system %d, user %d, answer %d)%n",
                model, backend, prefix, suffix, turns, system, user, answer);
        System.out.println("# cpu: " + cpu() + ", " + Runtime.getRuntime().availableProcessors() + " processors; load " + load());
        if (mode.equals("both") || mode.equals("in-process")) inProcess(model, backend);
        if (mode.equals("both") || mode.equals("mesh")) mesh(model, backend);
        System.out.println("# load at the end " + load());
    }

    static int[] tokens(long seed, int n, int vocab) { return new SplittableRandom(seed).ints(n, 0, vocab).toArray(); }

    static int[] concat(int[]... parts) {
        int[] out = new int[Arrays.stream(parts).mapToInt(p -> p.length).sum()];
        int at = 0;
        for (int[] p : parts) { System.arraycopy(p, 0, out, at, p.length); at += p.length; }
        return out;
    }

    static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    static double median(List<Double> xs) {
        double[] a = xs.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return a.length % 2 == 1 ? a[a.length / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
    }

    // ---- in-process ----

    private void inProcess(Path dir, String backend) throws Exception {
        try (MeshModel mm = MeshModel.load(dir, Backends.create(backend))) {
            MiniMaxModel m = mm.model();
            int vocab = m.config().vocabSize();
            System.out.println("## in-process (" + m.ops().getClass().getSimpleName() + ")");
            m.prefill(m.newState(), tokens(99, 1024, vocab)); // warm-up: JIT, weights paged in
            List<Double> ratios = new ArrayList<>();
            for (int r = 0; r < repeat; r++) {
                int[] shared = tokens(1000 + r, prefix, vocab);
                int[] first = concat(shared, tokens(2000 + r, suffix, vocab)), second = concat(shared, tokens(3000 + r, suffix, vocab));
                long t = System.nanoTime();
                argmax(m.prefill(m.newState(), first));
                double plain = ms(t);
                CachedPrefill p = new CachedPrefill(m, new PrefixCache(m.config(), 1L << 30));
                t = System.nanoTime();
                CachedPrefill.Result a = p.prefill(first);
                argmax(a.logits());
                double ta = ms(t);
                t = System.nanoTime();
                CachedPrefill.Result b = p.prefill(second);
                argmax(b.logits());
                double tb = ms(t);
                ratios.add(tb / ta);
                System.out.printf(Locale.ROOT, "shared-prefix run %d: first %d tokens TTFT %.1f ms (no cache %.1f ms); second %d tokens, %d cached, TTFT %.1f ms; ratio %.3f%n",
                        r, first.length, ta, plain, second.length, b.cachedTokens(), tb, tb / ta);
            }
            System.out.printf(Locale.ROOT, "RESULT in-process shared %d-token prefix: TTFT second / first = %.3f (median of %d)%n", prefix, median(ratios), repeat);

            PrefixCache cache = new PrefixCache(m.config(), 1L << 30);
            CachedPrefill p = new CachedPrefill(m, cache);
            int[] ctx = tokens(4000, system, vocab);
            System.out.println("turn  context  cached  TTFT-cached-ms  TTFT-no-cache-ms");
            for (int turn = 1; turn <= turns; turn++) {
                ctx = concat(ctx, tokens(5000 + turn, user, vocab));
                long t = System.nanoTime();
                argmax(m.prefill(m.newState(), ctx));
                double plain = ms(t);
                t = System.nanoTime();
                CachedPrefill.Result r = p.prefill(ctx);
                float[] logits = r.logits();
                int next = argmax(logits);
                double cached = ms(t);
                System.out.printf(Locale.ROOT, "%4d  %7d  %6d  %14.1f  %16.1f%n", turn, ctx.length, r.cachedTokens(), cached, plain);
                int[] reply = new int[answer]; // the answer, greedy, then the next user message
                SequenceState s = r.state();
                for (int i = 0; i < answer; i++) {
                    reply[i] = next;
                    next = argmax(m.decode(List.of(s), new int[]{next})[0]);
                }
                ctx = concat(ctx, reply);
            }
            PrefixCache.Stats st = cache.stats();
            System.out.printf(Locale.ROOT, "chat cache: %d lookups, %d hits, %d of %d context tokens cached, %.1f MiB held%n",
                    st.lookups(), st.hits(), st.cachedTokens(), st.promptTokens(), st.bytes() / 1048576.0);
        }
    }

    private static double ms(long since) { return (System.nanoTime() - since) / 1e6; }

    // ---- through the mesh ----

    /** One streamed request: client-side TTFT, the answer's ids, and the cached tokens reported. */
    record Streamed(double ttftMs, int[] ids, int cached) {}

    private void mesh(Path dir, String backend) throws Exception {
        EmbeddedMesh.Options d = EmbeddedMesh.Options.defaults(dir);
        Path work = Files.createTempDirectory("lightmesh-prefix-bench");
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(dir, "127.0.0.1", 0, -1, f.get("kafka", null), work, f.getInt("experts", 2), 1, 1,
                d.decodeBudgetBytes(), d.maxBatch(), d.topic(), d.maxInFlight(), d.defaultMaxNewTokens(), backend,
                Main.gib(f.getDouble("prefix-cache-gib", 1), "prefix-cache-gib"));
        try (EmbeddedMesh mesh = EmbeddedMesh.start(o)) {
            if (!mesh.awaitReady(120_000)) throw new IllegalStateException("mesh not ready: " + mesh.router().health());
            ManagedChannel ch = Grpc.channel(mesh.routerTarget());
            try {
                InferenceGrpc.InferenceBlockingStub client = InferenceGrpc.newBlockingStub(ch);
                int vocab = mesh.model().config().vocabSize();
                System.out.printf(Locale.ROOT, "## mesh (%d expert shards, 1 prefill, 1 decode worker; prefix cache %.2f GiB)%n",
                        o.expertShards(), o.prefixCacheBytes() / (double) (1L << 30));
                for (int i = 0; i < 3; i++) stream(client, "warmup-" + i, tokens(90 + i, 1024, vocab), 4); // warm-up
                List<Double> ratios = new ArrayList<>();
                for (int r = 0; r < repeat; r++) {
                    int[] shared = tokens(1000 + r, prefix, vocab);
                    int[] first = concat(shared, tokens(2000 + r, suffix, vocab)), second = concat(shared, tokens(3000 + r, suffix, vocab));
                    Streamed a = stream(client, "bench-" + r, first, 4), b = stream(client, "bench-" + r, second, 4);
                    ratios.add(b.ttftMs() / a.ttftMs());
                    System.out.printf(Locale.ROOT, "shared-prefix run %d: first %d tokens TTFT %.1f ms (%d cached); second %d tokens, %d cached, TTFT %.1f ms; ratio %.3f%n",
                            r, first.length, a.ttftMs(), a.cached(), second.length, b.cached(), b.ttftMs(), b.ttftMs() / a.ttftMs());
                }
                System.out.printf(Locale.ROOT, "RESULT mesh shared %d-token prefix: TTFT second / first = %.3f (median of %d)%n", prefix, median(ratios), repeat);

                int[] ctx = tokens(4000, system, vocab);
                System.out.println("turn  context  cached  TTFT-ms");
                for (int turn = 1; turn <= turns; turn++) {
                    ctx = concat(ctx, tokens(5000 + turn, user, vocab));
                    Streamed s = stream(client, "chat", ctx, answer);
                    System.out.printf(Locale.ROOT, "%4d  %7d  %6d  %7.1f%n", turn, ctx.length, s.cached(), s.ttftMs());
                    ctx = concat(ctx, s.ids());
                }
            } finally {
                Grpc.shutdown(ch);
            }
        }
    }

    private static Streamed stream(InferenceGrpc.InferenceBlockingStub client, String conversation, int[] prompt, int maxNew) {
        TokenIds.Builder ids = TokenIds.newBuilder();
        for (int t : prompt) ids.addIds(t);
        GenerateRequest req = GenerateRequest.newBuilder().setConversationId(conversation).setTokenIds(ids).setReturnTokenIds(true)
                .setSampling(SamplingParams.newBuilder().setTemperature(0f).setMaxNewTokens(maxNew)).build();
        long t0 = System.nanoTime();
        double ttft = -1;
        List<Integer> out = new ArrayList<>();
        int cached = -1;
        Iterator<GenerateChunk> it = client.withDeadlineAfter(300, TimeUnit.SECONDS).generateStream(req);
        while (it.hasNext()) {
            GenerateChunk c = it.next();
            if (ttft < 0 && c.getTokenIdsCount() > 0) ttft = ms(t0);
            out.addAll(c.getTokenIdsList());
            if (c.hasUsage()) cached = c.getUsage().getCachedTokens();
        }
        return new Streamed(ttft, out.stream().mapToInt(Integer::intValue).toArray(), cached);
    }

    private static String load() {
        try {
            return Files.readString(Path.of("/proc/loadavg")).trim();
        } catch (Exception e) {
            return "unknown";
        }
    }

    private static String cpu() {
        try {
            return Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(l -> l.startsWith("model name"))
                    .findFirst().map(l -> l.substring(l.indexOf(':') + 1).trim()).orElse("unknown");
        } catch (Exception e) {
            return "unknown";
        }
    }
}
