package io.lightmesh.launcher;

import io.grpc.ManagedChannel;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.expert.ExpertShard;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.router.placement.PlacementController;
import io.lightmesh.router.placement.PlacementView;
import io.opentelemetry.api.OpenTelemetry;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The elastic expert pool under a skewed load: the same mesh (4 expert shards, one decode and one prefill worker,
 * real Kafka and gRPC) run twice on a checkpoint whose router sends nearly every token of layer 0 to experts {0, 4}
 * and of layer 1 to experts {1, 5}: under the static round-robin placement (4 shards, e % 4) one shard computes all
 * of a layer's expert rows; then with the placement controller, which replicates the hot experts and spreads their
 * rows. Prints decode throughput, TPOT, the controller's imbalance and the measured one (tokens each shard computed),
 * and the time to re-place.
 *
 * <p>Honest on one machine: every service shares this JVM's cores, so placement can only matter where a shard's own
 * compute is the critical path. The engine runs on the {@code reference} backend (one thread per matrix product; the
 * vector backend's one shared worker pool would serialise every shard's compute on one lock and spread each over all
 * cores, hiding the placement), so each shard computes a batch on one core and the shards of one expert call run in
 * parallel on as many cores as the machine has; the decode worker waits for the slowest shard of every layer. The
 * shape makes experts dominate a decode step (hidden 256, 8 experts of 1024, 2 layers). With 4 shards on 2 cores
 * the balanced placement can at best use 2 cores where the static one uses 1: on 4 machines it could use 4.
 *
 * <p>Options: --requests N (64), --concurrency N (16), --prompt-len N (32), --output-len N (48), --window-s S (6),
 * --backend B (reference).
 */
public final class ExpertPoolBench {
    static final int[][] HOT = {{0, 4}, {1, 5}};
    static final SyntheticCheckpoint.Shape SHAPE = new SyntheticCheckpoint.Shape(512, 256, 2, 4, 2, 64, 32, 8, 2, 1024, 64);

    private ExpertPoolBench() {}

    public static void main(String[] args) throws Exception {
        int requests = 64, concurrency = 16, promptLen = 32, outputLen = 48;
        double windowS = 6;
        String backend = "reference";
        for (int i = 0; i < args.length; i += 2) {
            String v = i + 1 < args.length ? args[i + 1] : null;
            if (v == null) throw new IllegalArgumentException(args[i] + " needs a value");
            switch (args[i]) {
                case "--requests" -> requests = Integer.parseInt(v);
                case "--concurrency" -> concurrency = Integer.parseInt(v);
                case "--prompt-len" -> promptLen = Integer.parseInt(v);
                case "--output-len" -> outputLen = Integer.parseInt(v);
                case "--window-s" -> windowS = Double.parseDouble(v);
                case "--backend" -> backend = v;
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        Path dir = Files.createTempDirectory("lightmesh-pool-bench");
        Path model = dir.resolve("model");
        SkewedCheckpoint.write(model, SHAPE, HOT, 0.5);
        List<int[]> prompts = new ArrayList<>();
        SplittableRandom rnd = new SplittableRandom(42);
        for (int i = 0; i < requests; i++) prompts.add(rnd.ints(promptLen, 0, SHAPE.vocab()).toArray());
        System.out.printf(Locale.ROOT, "bench-pool: %d requests, prompt %d, output %d, concurrency %d; shape hidden %d, %d layers, %d experts of %d, top-%d;"
                        + " hot experts per layer %s; 4 expert shards, backend %s, %d cores%n", requests, promptLen, outputLen, concurrency,
                SHAPE.hidden(), SHAPE.layers(), SHAPE.experts(), SHAPE.intermediate(), SHAPE.topK(), java.util.Arrays.deepToString(HOT), backend,
                Runtime.getRuntime().availableProcessors());
        KraftBroker broker = KraftBroker.start(dir.resolve("kafka"), 0);
        try {
            Result fixed = run("static round-robin placement", broker, dir, model, backend, prompts, concurrency, outputLen, windowS, false);
            Result balanced = run("placement controller (EPLB)", broker, dir, model, backend, prompts, concurrency, outputLen, windowS, true);
            boolean same = fixed.tokens.equals(balanced.tokens);
            System.out.printf(Locale.ROOT, "%n== summary ==%n  greedy outputs identical static vs balanced: %s%n", same);
            System.out.printf(Locale.ROOT, "  throughput  static %.1f tok/s, balanced %.1f tok/s: %.2fx%n", fixed.tokPerS, balanced.tokPerS, balanced.tokPerS / fixed.tokPerS);
            System.out.printf(Locale.ROOT, "  TPOT mean   static %.2f ms, balanced %.2f ms%n", fixed.tpotMs, balanced.tpotMs);
            System.out.printf(Locale.ROOT, "  imbalance   static %.2f (measured %.2f), balanced %.2f (measured %.2f)%n", fixed.imbalance, fixed.measured,
                    balanced.imbalance, balanced.measured);
            System.out.printf(Locale.ROOT, "  time to re-place: %.1f s from the start of the skewed load to the new version (window %.0f s), of which %d ms"
                    + " loading the new copies and publishing%n", balanced.replaceAfterS, windowS, balanced.applyMs);
            if (!same) System.exit(1);
        } finally {
            broker.close();
        }
    }

    record Result(double tokPerS, double tpotMs, double imbalance, double measured, double replaceAfterS, long applyMs, List<List<Integer>> tokens) {}

    static Result run(String name, KraftBroker broker, Path dir, Path model, String backend, List<int[]> prompts, int concurrency,
                      int outputLen, double windowS, boolean balance) throws Exception {
        String topic = "lightmesh.bench-pool." + (balance ? "balanced" : "static");
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", 0, -1, broker.bootstrapServers(), dir, 4, 1, 1,
                4L << 30, 16, topic, 256, outputLen, backend);
        // static: a threshold no load reaches, so the controller measures but never re-places
        EmbeddedMesh.ExpertPool pool = new EmbeddedMesh.ExpertPool(-1, 0, 0, 500, Math.round(windowS * 1000), balance ? 1.25 : 1e9, 1000, 0.7);
        EmbeddedMesh mesh = EmbeddedMesh.start(o, pool, s -> OpenTelemetry.noop());
        ManagedChannel ch = Grpc.channel(mesh.routerTarget());
        try {
            if (!mesh.awaitReady(60_000)) throw new IllegalStateException("mesh not ready: " + mesh.router().health());
            PlacementController c = mesh.placementController();
            // warm-up, and for the controller: skewed load until it re-placed (or twice the window passed)
            long t0 = System.nanoTime();
            double replaceAfter = Double.NaN;
            List<int[]> warm = prompts.subList(0, Math.min(prompts.size(), 2 * concurrency));
            do {
                BenchServe.run(warm, concurrency, 0, outputLen, p -> BenchServe.meshRequest(ch, p, outputLen));
                if (balance && c.rebalances() > 0 && Double.isNaN(replaceAfter)) replaceAfter = (System.nanoTime() - t0) / 1e9;
            } while (balance ? c.rebalances() == 0 && System.nanoTime() - t0 < 3 * windowS * 1e9 : System.nanoTime() - t0 < windowS * 1e9);
            if (balance && c.rebalances() == 0) System.out.println("  (the controller did not re-place within 3 windows)");
            long[] before = shardTokens(mesh);
            long t1 = System.nanoTime();
            List<BenchServe.Sample> samples = BenchServe.run(prompts, concurrency, 0, outputLen, p -> BenchServe.meshRequest(ch, p, outputLen));
            double wall = (System.nanoTime() - t1) / 1e9;
            long[] after = shardTokens(mesh);
            BenchServe.report(name, samples, wall, Double.MAX_VALUE, Double.MAX_VALUE);
            PlacementView v = c.view();
            double[] computed = new double[after.length];
            StringBuilder per = new StringBuilder();
            for (int s = 0; s < after.length; s++) {
                computed[s] = after[s] - (s < before.length ? before[s] : 0);
                per.append(String.format(Locale.ROOT, " %s %.0f", mesh.experts().get(s).id(), computed[s]));
            }
            double measured = io.lightmesh.mesh.EplbPlanner.imbalance(computed);
            System.out.printf(Locale.ROOT, "  placement version %d, controller imbalance %.2f (static would be %.2f); expert rows computed per shard:%s"
                    + " (measured imbalance %.2f)%n", v.version(), v.imbalance(), v.imbalanceStatic(), per, measured);
            for (PlacementView.ShardView s : v.shards()) {
                System.out.printf(Locale.ROOT, "    %s holds %d pairs, load %.0f tokens/s%n", s.id(), s.experts().size(), s.load());
            }
            int tokens = samples.stream().filter(BenchServe.Sample::ok).mapToInt(BenchServe.Sample::outTokens).sum();
            double tpot = samples.stream().filter(BenchServe.Sample::ok).mapToDouble(BenchServe.Sample::tpotMs).average().orElse(Double.NaN);
            // the answers themselves (Sample keeps timings only): the same prompts through both placements must agree
            List<List<Integer>> ids = new ArrayList<>();
            for (int[] p : prompts.subList(0, Math.min(8, prompts.size()))) ids.add(greedyIds(ch, p, outputLen));
            return new Result(tokens / wall, tpot, v.imbalance(), measured, replaceAfter, c.lastReplaceMs(), ids);
        } finally {
            Grpc.shutdown(ch);
            mesh.close();
        }
    }

    private static long[] shardTokens(EmbeddedMesh mesh) {
        List<EmbeddedMesh.Component<ExpertShard>> es = mesh.experts();
        long[] t = new long[es.size()];
        for (int i = 0; i < t.length; i++) t[i] = es.get(i).worker().info().getTokensComputed();
        return t;
    }

    private static List<Integer> greedyIds(ManagedChannel ch, int[] prompt, int outputLen) {
        return io.lightmesh.proto.v1.InferenceGrpc.newBlockingStub(ch).withDeadlineAfter(5, java.util.concurrent.TimeUnit.MINUTES)
                .generate(BenchServe.request(prompt, outputLen)).getTokenIdsList();
    }
}
