package io.lightmesh.engine.bench;

import io.lightmesh.engine.generate.Sampler;
import io.lightmesh.engine.generate.SamplingParams;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Times one sampled token on the host, as the decode loop draws it for every sampled row of a step: {@link Sampler}
 * (top-k and top-p over the best tokens only) beside {@link Sampler#plain} (the whole vocabulary sorted), on logits
 * of N(0, sigma^2) at MiniMax-M1's vocabulary and the test models'. Prints milliseconds a token, the median of the
 * repetitions, and checks that both chose the same tokens.
 */
public final class SamplerBench {
    @Command(name = "SamplerBench", sortOptions = false, usageHelpWidth = 120,
            description = "Times Sampler against its plain form (the whole vocabulary sorted) per sampling setting.")
    static final class Options implements BenchCommandLine.Checked {
        @Option(names = {"-h", "--help"}, usageHelp = true, description = "Show this help and exit.")
        boolean help;
        @Option(names = "--vocab", paramLabel = "V", split = ",", defaultValue = "32000,200064",
                description = "Vocabulary sizes (default: ${DEFAULT-VALUE}: the bench shape's and MiniMax-M1's).")
        List<Integer> vocab;
        @Option(names = "--sigma", paramLabel = "S", defaultValue = "2",
                description = "Spread of the random logits (default: ${DEFAULT-VALUE}).")
        double sigma;
        @Option(names = "--batch", paramLabel = "B", defaultValue = "8",
                description = "Rows of a decode step drawn one after another and in parallel, as ContinuousBatcher does "
                        + "(default: ${DEFAULT-VALUE}; 0 skips).")
        int batch;
        @Option(names = "--reps", paramLabel = "N", defaultValue = "21",
                description = "Timed draws per case, the median kept (default: ${DEFAULT-VALUE}).")
        int reps;

        @Override
        public void check(CommandLine cl) {
            if (reps <= 0) throw BenchCommandLine.wrong(cl, "--reps: expected a positive integer, got " + reps);
            for (int v : vocab) if (v <= 0) throw BenchCommandLine.wrong(cl, "--vocab: expected positive sizes, got " + v);
            if (batch < 0) throw BenchCommandLine.wrong(cl, "--batch: expected 0 or more rows, got " + batch);
            if (!(sigma > 0)) throw BenchCommandLine.wrong(cl, "--sigma: expected a positive number, got " + sigma);
        }
    }

    private record Setting(String name, float temperature, int topK, float topP) {}

    private static final List<Setting> SETTINGS = List.of(new Setting("temperature 1", 1f, 0, 1f),
            new Setting("top_k 50", 1f, 50, 1f), new Setting("top_p 0.95", 1f, 0, 0.95f),
            new Setting("top_k 50 + top_p 0.9", 0.7f, 50, 0.9f), new Setting("top_p 0.9, T 0.6", 0.6f, 0, 0.9f));

    public static void main(String[] args) {
        Options o = new Options();
        Integer parsed = BenchCommandLine.parse("SamplerBench", o, args, System.out, System.err);
        if (parsed != null) System.exit(parsed);
        System.out.printf(Locale.ROOT, "SamplerBench: JDK %s, %d cores, logits N(0, %.1f^2), median of %d draws%n",
                Runtime.version(), Runtime.getRuntime().availableProcessors(), o.sigma, o.reps);
        System.out.printf(Locale.ROOT, "%8s  %-22s %12s %12s %9s%n", "vocab", "setting", "Sampler ms", "plain ms", "speed-up");
        for (int V : o.vocab) {
            SplittableRandom rnd = new SplittableRandom(V);
            float[] logits = new float[V];
            for (int i = 0; i < V; i++) logits[i] = (float) (rnd.nextGaussian() * o.sigma);
            for (Setting s : SETTINGS) {
                SamplingParams p = new SamplingParams(s.temperature(), s.topK(), s.topP(), 7, 10, List.of(), 0);
                Sampler fast = new Sampler(p);
                SplittableRandom plainRandom = new SplittableRandom(p.seed());
                double[] fastMs = new double[o.reps], plainMs = new double[o.reps];
                for (int i = -10; i < o.reps; i++) { // 10 unrecorded draws each: the JIT
                    long t0 = System.nanoTime();
                    int a = fast.sample(logits);
                    long t1 = System.nanoTime();
                    int b = Sampler.plain(logits, p, plainRandom);
                    long t2 = System.nanoTime();
                    if (a != b) throw new IllegalStateException(s.name() + " at V=" + V + ": Sampler drew " + a + ", plain " + b);
                    if (i >= 0) {
                        fastMs[i] = (t1 - t0) / 1e6;
                        plainMs[i] = (t2 - t1) / 1e6;
                    }
                }
                double f = median(fastMs), q = median(plainMs);
                System.out.printf(Locale.ROOT, "%8d  %-22s %12.3f %12.3f %8.1fx%n", V, s.name(), f, q, q / f);
            }
        }
        batch(o);
    }

    /**
     * A step's B sampled rows (each its own generation: own sampler, own seed), drawn in row order on one thread and
     * spread over the common fork-join pool (ContinuousBatcher's form); the same tokens both ways.
     */
    private static void batch(Options o) {
        if (o.batch == 0) return;
        System.out.printf(Locale.ROOT, "%nA step's %d sampled rows, one thread against the common pool (%d threads):%n", o.batch,
                java.util.concurrent.ForkJoinPool.getCommonPoolParallelism());
        System.out.printf(Locale.ROOT, "%8s  %-22s %12s %12s %9s%n", "vocab", "setting", "parallel ms", "serial ms", "speed-up");
        for (int V : o.vocab) {
            SplittableRandom rnd = new SplittableRandom(V + 1);
            float[][] logits = new float[o.batch][V];
            for (float[] row : logits) for (int i = 0; i < V; i++) row[i] = (float) (rnd.nextGaussian() * o.sigma);
            for (Setting s : List.of(SETTINGS.get(2), SETTINGS.get(3))) {
                Sampler[] a = new Sampler[o.batch], b = new Sampler[o.batch];
                for (int r = 0; r < o.batch; r++) {
                    SamplingParams p = new SamplingParams(s.temperature(), s.topK(), s.topP(), 100 + r, 10, List.of(), 0);
                    a[r] = new Sampler(p);
                    b[r] = new Sampler(p);
                }
                double[] par = new double[o.reps], ser = new double[o.reps];
                int[] x = new int[o.batch], y = new int[o.batch];
                for (int i = -5; i < o.reps; i++) {
                    long t0 = System.nanoTime();
                    java.util.stream.IntStream.range(0, o.batch).parallel().forEach(r -> x[r] = a[r].sample(logits[r]));
                    long t1 = System.nanoTime();
                    for (int r = 0; r < o.batch; r++) y[r] = b[r].sample(logits[r]);
                    long t2 = System.nanoTime();
                    if (!java.util.Arrays.equals(x, y)) throw new IllegalStateException("parallel rows drew other tokens");
                    if (i >= 0) {
                        par[i] = (t1 - t0) / 1e6;
                        ser[i] = (t2 - t1) / 1e6;
                    }
                }
                double f = median(par), q = median(ser);
                System.out.printf(Locale.ROOT, "%8d  %-22s %12.3f %12.3f %8.1fx%n", V, s.name(), f, q, q / f);
            }
        }
    }

    private static double median(double[] a) {
        double[] s = a.clone();
        java.util.Arrays.sort(s);
        return s[s.length / 2];
    }
}
