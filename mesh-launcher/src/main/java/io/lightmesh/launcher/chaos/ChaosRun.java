package io.lightmesh.launcher.chaos;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import java.util.stream.Collectors;

/**
 * The chaos harness: starts the mesh as separate processes ({@link ChaosMesh}), keeps a mixed greedy load on it
 * ({@link ChaosLoad}, {@code concurrency} clients, each sending its next request when the last one answered), and
 * goes through a schedule of {@link Fault}s, one phase each: once a fifth of the phase's requests are sent, the
 * fault is injected, held, healed (the process started again or resumed), and the phase ends when the mesh is ready
 * again and the phase's requests are all sent. Every request counts for the phase it was sent in. The report gives
 * per phase: right, wrong, failed (and with what), hung; latencies; how long the mesh took to be ready again; and
 * the machine's load. Targets: no wrong or hung request anywhere, no failed one but under a killed router.
 *
 * <p>Command (after {@code mvn -B -ntp package -DskipTests}): {@code scripts/chaos [--requests N] [--schedule S] ...};
 * options in {@link #USAGE}. Exit status 0 when every target held, 1 when one did not, 2 on bad options.
 */
public final class ChaosRun {
    static final String FULL_SCHEDULE = "none,kill-router:1,kill-prefill:1,kill-decode:1,kill-expert:1,restart-broker@5,"
            + "freeze-decode:0@30,freeze-prefill:0@30,freeze-expert:0@30,slow-expert:1@30";

    static final String USAGE = """
            scripts/chaos [options]      the chaos harness (RELIABILITY.md)
              --model DIR          checkpoint (default models/demo)
              --dir DIR            logs, report and the broker's data (default target/chaos/<time>)
              --requests N         requests in all, spread evenly over the faults (default 1000)
              --concurrency N      clients sending at once (default 8)
              --schedule S         faults in order, comma-separated name[:victim][@seconds] (default the full schedule:
                                   %s)
              --hold-s S           how long a fault lasts when the schedule does not say (default 10)
              --max-tokens N       tokens per request (default 16)
              --deadline-s S       a request with no complete answer by then is hung (default 120)
              --routers N --prefills N --decodes N --experts N   processes of each kind (default 2 each)
              --backend B          engine backend of the services and of the in-process check (default reference)
              --jvm-flags "F..."   extra JVM flags of every service (default -Xmx256m -XX:+UseSerialGC)
              --warmup N           requests before the first phase, not counted (default 2 x concurrency)
            """.formatted(FULL_SCHEDULE);

    /** Everything a run needs. */
    public record Options(Path model, Path dir, Path repo, int routers, int prefills, int decodes, int experts, String schedule,
                          long holdMs, int requests, int concurrency, int maxTokens, long deadlineMs, String backend, List<String> jvmFlags,
                          int warmup) {}

    /** One phase's figures. */
    public record PhaseReport(Fault fault, int requests, int right, int wrong, int failed, int hung, Map<String, Integer> failures,
                              List<String> wrongDetails, long p50Ms, long p99Ms, long maxMs, long readyAgainMs, double loadMin, double loadMax) {
        /** Whether this phase met its targets. */
        public boolean ok() { return wrong == 0 && hung == 0 && (failed == 0 || fault.failuresAllowed()); }
    }

    /** The whole run. */
    public record Report(List<PhaseReport> phases, PhaseReport warmup, Map<String, Long> maxRssMiB, double loadMean, long seconds, Path dir) {
        public boolean ok() { return phases.stream().allMatch(PhaseReport::ok); }

        public PhaseReport phase(String name) {
            return phases.stream().filter(p -> p.fault().name().equals(name)).findFirst()
                    .orElseThrow(() -> new IllegalArgumentException("no phase " + name));
        }

        /** The per-fault table (markdown). */
        public String table() {
            StringBuilder sb = new StringBuilder("| fault | requests | right | wrong | failed | hung | p50 ms | p99 ms | max ms | ready again ms | load avg | target |\n")
                    .append("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            for (PhaseReport p : phases) {
                sb.append(String.format(Locale.ROOT, "| %s | %d | %d | %d | %d | %d | %d | %d | %d | %s | %.1f-%.1f | %s |%n", p.fault().name()
                                + (p.fault().action() == Fault.Action.NONE ? "" : " (" + p.fault().holdMs() / 1000 + " s)"),
                        p.requests(), p.right(), p.wrong(), p.failed(), p.hung(), p.p50Ms(), p.p99Ms(), p.maxMs(),
                        p.readyAgainMs() < 0 ? "-" : Long.toString(p.readyAgainMs()), p.loadMin(), p.loadMax(), p.ok() ? "met" : "MISSED"));
            }
            if (warmup != null && warmup.requests() > 0) {
                sb.append(String.format(Locale.ROOT, "%nwarm-up before the first phase (not counted): %d requests, %d right, %d wrong, %d failed, %d hung, p50 %d ms, max %d ms%n",
                        warmup.requests(), warmup.right(), warmup.wrong(), warmup.failed(), warmup.hung(), warmup.p50Ms(), warmup.maxMs()));
            }
            for (PhaseReport p : phases) {
                p.failures().forEach((why, n) -> sb.append("\n- ").append(p.fault().name()).append(": ").append(n).append(" failed: ").append(why));
                for (String w : p.wrongDetails()) sb.append("\n- ").append(p.fault().name()).append(": wrong: ").append(w);
            }
            return sb.append('\n').toString();
        }
    }

    private ChaosRun() {}

    /** Runs the schedule on a mesh of its own; the mesh is gone when this returns. */
    public static Report run(Options o, PrintWriter log) throws Exception {
        List<Fault> faults = Fault.parse(o.schedule(), o.holdMs());
        Files.createDirectories(o.dir());
        long t0 = System.currentTimeMillis();
        log.printf("chaos: starting the mesh (%d routers, %d prefill, %d decode, %d expert processes, a KRaft broker); logs in %s%n",
                o.routers(), o.prefills(), o.decodes(), o.experts(), o.dir());
        log.flush();
        try (Expected expected = new Expected(o.model(), o.backend());
             ChaosMesh mesh = ChaosMesh.start(new ChaosMesh.Shape(o.model(), o.dir(), o.repo(), o.routers(), o.prefills(), o.decodes(), o.experts(),
                     o.backend(), o.jvmFlags()), 240_000);
             Sampler sampler = new Sampler(mesh)) {
            log.printf("chaos: mesh ready in %d s; %d requests over %d phases, %d clients%n", (System.currentTimeMillis() - t0) / 1000,
                    o.requests(), faults.size(), o.concurrency());
            log.flush();
            ChaosLoad load = new ChaosLoad(expected, o.model().getFileName().toString(), o.maxTokens(), o.deadlineMs());
            PhaseReport warm = warmUp(load, mesh.routerUrls(), o);
            log.printf(Locale.ROOT, "chaos: warm-up (not counted): %d requests, %d right, %d wrong, %d failed, %d hung, slowest %d ms%n",
                    warm.requests(), warm.right(), warm.wrong(), warm.failed(), warm.hung(), warm.maxMs());
            log.flush();
            List<ChaosLoad.Outcome> outcomes = Collections.synchronizedList(new ArrayList<>());
            Map<String, AtomicInteger> started = new ConcurrentHashMap<>();
            AtomicInteger seq = new AtomicInteger();
            String[] phase = {faults.getFirst().name()};
            boolean[] stop = {false};
            List<String> routers = mesh.routerUrls();
            // daemon threads: a run that fails (a process that will not start again) must not keep the JVM alive
            ExecutorService clients = Executors.newFixedThreadPool(o.concurrency(), r -> Thread.ofPlatform().daemon().unstarted(r));
            for (int c = 0; c < o.concurrency(); c++) {
                clients.submit(() -> {
                    while (true) {
                        String ph;
                        synchronized (phase) {
                            if (stop[0]) return;
                            ph = phase[0];
                            started.computeIfAbsent(ph, k -> new AtomicInteger()).incrementAndGet();
                        }
                        outcomes.add(load.run(seq.getAndIncrement(), ph, () -> routers));
                    }
                });
            }
            int quota = Math.max(1, o.requests() / faults.size());
            Map<String, Long> readyAgain = new LinkedHashMap<>();
            for (int i = 0; i < faults.size(); i++) {
                Fault f = faults.get(i);
                synchronized (phase) { phase[0] = f.name(); }
                sampler.phase(f.name());
                AtomicInteger n = started.computeIfAbsent(f.name(), k -> new AtomicInteger());
                awaitCount(n, Math.max(1, quota / 5), o.deadlineMs());
                log.printf("chaos: [%s] %s%n", Instant.now(), describe(f));
                log.flush();
                long healed = inject(mesh, f);
                long ready = -1;
                if (f.action() != Fault.Action.NONE) {
                    mesh.awaitAllReady(240_000);
                    ready = System.currentTimeMillis() - healed;
                }
                readyAgain.put(f.name(), ready);
                // the last phase ends once all of the run's requests are sent
                awaitCount(n, i == faults.size() - 1 ? o.requests() - (faults.size() - 1) * quota : quota, 30L * o.deadlineMs());
                log.printf("chaos: [%s] %s done (%d requests sent; ready again %d ms after healing)%n", Instant.now(), f.name(), n.get(), ready);
                log.flush();
            }
            synchronized (phase) { stop[0] = true; }
            clients.shutdown();
            if (!clients.awaitTermination(o.deadlineMs() + 60_000, TimeUnit.MILLISECONDS)) {
                clients.shutdownNow();
                log.println("chaos: clients still busy past their deadline; stopped");
            }
            List<ChaosLoad.Outcome> all;
            synchronized (outcomes) { all = new ArrayList<>(outcomes); }
            writeRequests(o.dir().resolve("requests.tsv"), all);
            List<PhaseReport> phases = new ArrayList<>();
            for (Fault f : faults) {
                List<ChaosLoad.Outcome> mine = all.stream().filter(x -> x.phase().equals(f.name())).toList();
                double[] l = sampler.load(f.name());
                phases.add(phase(f, mine, readyAgain.getOrDefault(f.name(), -1L), l[0], l[1]));
            }
            Report r = new Report(phases, warm, sampler.maxRss(), sampler.loadMean(), (System.currentTimeMillis() - t0) / 1000, o.dir());
            Files.writeString(o.dir().resolve("report.md"), r.table() + "\nmax RSS MiB: " + r.maxRssMiB() + "\nload average mean: "
                    + String.format(Locale.ROOT, "%.1f", r.loadMean()) + "\n");
            return r;
        }
    }

    /**
     * Requests before the first phase, {@code warmup} in all from {@code concurrency} clients, not counted: the first
     * requests of fresh JVMs (classes loaded, code compiled, the consumer group settled) measure start-up, not a fault.
     */
    private static PhaseReport warmUp(ChaosLoad load, List<String> routers, Options o) throws InterruptedException {
        List<ChaosLoad.Outcome> out = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger left = new AtomicInteger(o.warmup()), seq = new AtomicInteger(1_000_000);
        ExecutorService pool = Executors.newFixedThreadPool(o.concurrency(), r -> Thread.ofPlatform().daemon().unstarted(r));
        for (int c = 0; c < o.concurrency(); c++) {
            pool.submit(() -> {
                while (left.getAndDecrement() > 0) out.add(load.run(seq.getAndIncrement(), "warm-up", () -> routers));
            });
        }
        pool.shutdown();
        if (!pool.awaitTermination(o.deadlineMs() * (1 + o.warmup()), TimeUnit.MILLISECONDS)) pool.shutdownNow();
        return phase(new Fault("warm-up", Fault.Action.NONE, "", 0, 0), new ArrayList<>(out), -1, 0, 0);
    }

    private static String describe(Fault f) {
        return switch (f.action()) {
            case NONE -> "baseline: no fault";
            case KILL -> "SIGKILL " + f.target() + ", started again after " + f.holdMs() + " ms";
            case FREEZE -> "SIGSTOP " + f.target() + " for " + f.holdMs() + " ms, then SIGCONT";
            case SLOW -> f.target() + " runs " + (Fault.SLOW_PERIOD_MS - Fault.SLOW_STOPPED_MS) + " ms in every " + Fault.SLOW_PERIOD_MS
                    + " ms (SIGSTOP/SIGCONT) for " + f.holdMs() + " ms";
            case RESTART_BROKER -> "SIGKILL the broker, started again with its data after " + f.holdMs() + " ms";
        };
    }

    /** Injects and heals the fault; when it was healed (ms since the epoch). */
    static long inject(ChaosMesh mesh, Fault f) throws Exception {
        switch (f.action()) {
            case NONE -> Thread.sleep(f.holdMs());
            case KILL, RESTART_BROKER -> {
                mesh.kill(f.target());
                Thread.sleep(f.holdMs());
                mesh.restart(f.target());
            }
            case FREEZE -> {
                mesh.freeze(f.target());
                try {
                    Thread.sleep(f.holdMs());
                } finally {
                    mesh.thaw(f.target());
                }
            }
            case SLOW -> {
                long until = System.currentTimeMillis() + f.holdMs();
                while (System.currentTimeMillis() < until) {
                    mesh.freeze(f.target());
                    try {
                        Thread.sleep(Fault.SLOW_STOPPED_MS);
                    } finally {
                        mesh.thaw(f.target());
                    }
                    Thread.sleep(Fault.SLOW_PERIOD_MS - Fault.SLOW_STOPPED_MS);
                }
            }
        }
        return System.currentTimeMillis();
    }

    private static void awaitCount(AtomicInteger n, int count, long maxMs) throws InterruptedException {
        long until = System.currentTimeMillis() + maxMs;
        while (n.get() < count && System.currentTimeMillis() < until) Thread.sleep(20);
    }

    static PhaseReport phase(Fault f, List<ChaosLoad.Outcome> mine, long readyAgain, double loadMin, double loadMax) {
        Map<ChaosLoad.Outcome.Kind, Long> by = mine.stream().collect(Collectors.groupingBy(ChaosLoad.Outcome::kind, Collectors.counting()));
        Function<ChaosLoad.Outcome.Kind, Integer> count = k -> by.getOrDefault(k, 0L).intValue();
        Map<String, Integer> failures = new TreeMap<>();
        List<String> wrong = new ArrayList<>();
        for (ChaosLoad.Outcome x : mine) {
            if (x.kind() == ChaosLoad.Outcome.Kind.FAILED || x.kind() == ChaosLoad.Outcome.Kind.HUNG) failures.merge(x.detail(), 1, Integer::sum);
            if (x.kind() == ChaosLoad.Outcome.Kind.WRONG && wrong.size() < 5) wrong.add(x.shape() + " #" + x.seq() + ": " + x.detail());
        }
        long[] ms = mine.stream().filter(x -> x.kind() == ChaosLoad.Outcome.Kind.RIGHT).mapToLong(ChaosLoad.Outcome::millis).sorted().toArray();
        return new PhaseReport(f, mine.size(), count.apply(ChaosLoad.Outcome.Kind.RIGHT), count.apply(ChaosLoad.Outcome.Kind.WRONG),
                count.apply(ChaosLoad.Outcome.Kind.FAILED), count.apply(ChaosLoad.Outcome.Kind.HUNG), failures, wrong,
                pct(ms, 0.5), pct(ms, 0.99), ms.length == 0 ? 0 : ms[ms.length - 1], readyAgain, loadMin, loadMax);
    }

    private static long pct(long[] sorted, double q) {
        return sorted.length == 0 ? 0 : sorted[Math.min(sorted.length - 1, (int) Math.ceil(q * sorted.length) - 1)];
    }

    private static void writeRequests(Path file, List<ChaosLoad.Outcome> all) throws IOException {
        List<String> lines = new ArrayList<>();
        lines.add("seq\tphase\tshape\trouter\toutcome\tstart_ms\tmillis\tdetail");
        all.stream().sorted((a, b) -> Integer.compare(a.seq(), b.seq())).forEach(x -> lines.add(x.seq() + "\t" + x.phase() + "\t" + x.shape()
                + "\t" + x.router() + "\t" + x.kind() + "\t" + x.startMs() + "\t" + x.millis() + "\t" + (x.detail() == null ? "" : x.detail())));
        Files.write(file, lines);
    }

    /** Samples the machine's load average and each process's resident memory every second. */
    static final class Sampler implements AutoCloseable {
        private final ChaosMesh mesh;
        private final Thread thread;
        private volatile String phase = "";
        private final Map<String, double[]> loads = new ConcurrentHashMap<>(); // phase -> {min, max}
        private final Map<String, Long> rss = new ConcurrentHashMap<>();
        private double loadSum;
        private int loadN;
        private volatile boolean running = true;

        Sampler(ChaosMesh mesh) {
            this.mesh = mesh;
            this.thread = Thread.ofPlatform().daemon().name("chaos-sampler").start(this::loop);
        }

        void phase(String p) { phase = p; }

        private void loop() {
            while (running) {
                try {
                    double l = Double.parseDouble(Files.readString(Path.of("/proc/loadavg")).split(" ")[0]);
                    synchronized (this) { loadSum += l; loadN++; }
                    loads.compute(phase, (k, v) -> v == null ? new double[] {l, l} : new double[] {Math.min(v[0], l), Math.max(v[1], l)});
                    mesh.rssMiB().forEach((name, mib) -> rss.merge(name, mib, Math::max));
                    Thread.sleep(1000);
                } catch (InterruptedException e) {
                    return;
                } catch (IOException | RuntimeException e) {
                    // not Linux, or a process between states: skip this sample
                }
            }
        }

        double[] load(String p) { return loads.getOrDefault(p, new double[] {0, 0}); }

        synchronized double loadMean() { return loadN == 0 ? 0 : loadSum / loadN; }

        Map<String, Long> maxRss() { return new TreeMap<>(rss); }

        @Override
        public void close() {
            running = false;
            thread.interrupt();
        }
    }

    /** The options of the command line; see {@link #USAGE}. */
    static Options parse(String[] args, Path repo) {
        Map<String, String> v = new LinkedHashMap<>();
        List<String> known = List.of("model", "dir", "requests", "concurrency", "schedule", "hold-s", "max-tokens", "deadline-s",
                "routers", "prefills", "decodes", "experts", "backend", "jvm-flags", "warmup");
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("-h") || a.equals("--help")) throw new IllegalArgumentException(USAGE);
            if (!a.startsWith("--")) throw new IllegalArgumentException("chaos: unexpected argument '" + a + "'\n" + USAGE);
            String name = a.substring(2), value;
            int eq = name.indexOf('=');
            if (eq >= 0) { value = name.substring(eq + 1); name = name.substring(0, eq); }
            else if (i + 1 < args.length) value = args[++i];
            else throw new IllegalArgumentException("chaos: --" + name + " needs a value");
            if (!known.contains(name)) throw new IllegalArgumentException("chaos: unknown option --" + name + "\n" + USAGE);
            v.put(name, value);
        }
        try {
            Path model = Path.of(v.getOrDefault("model", repo.resolve("models/demo").toString())).toAbsolutePath();
            if (!Files.isRegularFile(model.resolve("config.json"))) throw new IllegalArgumentException("chaos: --model " + model + " has no config.json");
            Path dir = Path.of(v.getOrDefault("dir", repo.resolve("target/chaos/" + Instant.now().toString().replace(':', '-')).toString())).toAbsolutePath();
            return new Options(model, dir, repo, positive(v, "routers", 2), positive(v, "prefills", 2), positive(v, "decodes", 2), positive(v, "experts", 2),
                    v.getOrDefault("schedule", FULL_SCHEDULE), Math.round(Double.parseDouble(v.getOrDefault("hold-s", "10")) * 1000),
                    positive(v, "requests", 1000), positive(v, "concurrency", 8), positive(v, "max-tokens", 16),
                    Math.round(Double.parseDouble(v.getOrDefault("deadline-s", "120")) * 1000), v.getOrDefault("backend", "reference"),
                    Arrays.asList(v.getOrDefault("jvm-flags", "-Xmx256m -XX:+UseSerialGC").trim().split("\\s+")),
                    Integer.parseInt(v.getOrDefault("warmup", Integer.toString(2 * Integer.parseInt(v.getOrDefault("concurrency", "8"))))));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("chaos: not a number: " + e.getMessage());
        }
    }

    private static int positive(Map<String, String> v, String name, int fallback) {
        int n = Integer.parseInt(v.getOrDefault(name, Integer.toString(fallback)));
        if (n < 1) throw new IllegalArgumentException("chaos: --" + name + " must be at least 1, not " + n);
        return n;
    }

    public static void main(String[] args) throws Exception {
        Path repo = Path.of(System.getProperty("lightmesh.home", ".")).toAbsolutePath().normalize();
        Options o;
        try {
            o = parse(args, repo);
            Fault.parse(o.schedule(), o.holdMs());
        } catch (IllegalArgumentException e) {
            System.err.println(e.getMessage());
            System.exit(2);
            return;
        }
        PrintWriter out = new PrintWriter(System.out, true);
        Report r;
        try {
            r = run(o, out);
        } catch (Exception e) {
            out.flush();
            System.err.println("chaos: the run stopped: " + e);
            e.printStackTrace();
            System.exit(1);
            return;
        }
        out.println();
        out.print(r.table());
        out.printf(Locale.ROOT, "%nmax RSS MiB per process: %s%nload average (1 min) mean %.1f; %d s in all; requests in %s%n",
                r.maxRssMiB(), r.loadMean(), r.seconds(), o.dir().resolve("requests.tsv"));
        out.println(r.ok() ? "chaos: every target met" : "chaos: TARGET MISSED");
        out.flush();
        System.exit(r.ok() ? 0 : 1);
    }
}
