package io.lightmesh.launcher;

import io.lightmesh.mesh.MeshTelemetry;

import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import java.util.logging.Logger;

/**
 * The mesh's processes. {@code serve} runs the whole mesh on one machine, in this JVM ({@link EmbeddedMesh});
 * {@code router}, {@code prefill}, {@code decode} and {@code expert} run one service each, for real deployments (one
 * per process, container or host): the service's Quarkus application as a child process ({@link QuarkusApps}), the
 * same as {@code java -jar <module>/target/quarkus-app/quarkus-run.jar}. Every option can also come from the
 * environment: {@code --max-batch 32} or {@code LIGHTMESH_MAX_BATCH=32}. OpenTelemetry is configured by the standard
 * {@code OTEL_*} variables (see {@link MeshTelemetry}). The services run until SIGTERM / Ctrl-C. The full reference
 * is in mesh-launcher/README.md.
 *
 * <pre>
 * serve   [--model DIR] [--grpc-port 9000] [--http-port 8080] [--kafka HOST:PORT] [--experts N] [--decode N]
 *         [--prefill N] [--max-batch N] [--budget-gib G] [--prefix-cache-gib G] [--backend B] [--autoscale-experts MIN:MAX] [--expert-slots K]
 *         [--rebalance-interval-s 60] [--imbalance-threshold 1.25] [--api-key KEY]
 * router  --model DIR --kafka HOST:PORT --decode HOST:PORT,... [--experts HOST:PORT,...] [--host 0.0.0.0]
 *         [--grpc-port 9000] [--http-port 8080] [--topic T] [--partitions N] [--prefill-group G] [--max-in-flight N]
 *         [--default-max-new-tokens N] [--max-prompt-tokens N] [--max-resumes N] [--poll-ms N] [--api-key KEY]
 *         [--max-new-tokens N] [--max-messages N] [--max-tools N] [--max-stop-strings N] [--max-stop-chars N]
 * prefill --model DIR --kafka HOST:PORT [--experts HOST:PORT,...] [--id prefill-0] [--topic T] [--prefill-group G]
 *         [--chunk-bytes N] [--prefill-batch-tokens N] [--prefill-batch-max N] [--prefix-cache-gib G] [--backend B]
 *         [--host 0.0.0.0] [--http-port 8082]
 * decode  --model DIR [--experts HOST:PORT,...] [--id decode-0] [--host 0.0.0.0] [--grpc-port 9100] [--http-port 8081]
 *         [--advertise HOST:PORT] [--budget-gib G] [--max-batch N] [--state-wait-ms N] [--backend B]
 * expert  --model DIR --shard I/N [--id expert-I] [--host 0.0.0.0] [--grpc-port 9200] [--http-port 8083] [--advertise HOST:PORT]
 *         [--layers 0,1,...] [--backend B]
 * kafka   [--port 9092] [--dir lightmesh-kafka]     (a one-node broker for trying the services by hand)
 * </pre>
 */
public final class Main {
    private static final Logger LOG = Logger.getLogger(Main.class.getName());

    static final String USAGE = """
            usage: lightmesh-mesh <command> [options]     (each option also as LIGHTMESH_<NAME>, e.g. LIGHTMESH_KAFKA)
              serve    the whole mesh on this machine (Kafka broker child process unless --kafka)
              router   the public API: gRPC (lightmesh.v1.Inference) and HTTP (OpenAI API, /q/health/*)  [Quarkus app]
              prefill  a prefill worker (member of the Kafka consumer group)                             [Quarkus app]
              decode   a decode worker (state transfer + decode gRPC)                                    [Quarkus app]
              expert   an expert shard (expert gRPC)                                                     [Quarkus app]
              kafka    a one-node KRaft Kafka broker for trying the services by hand (--port 9092 --dir DIR)
              bench-serve  the serving benchmark (see BenchServe)
              bench-pool   the elastic expert pool under a skewed load: static vs balanced placement (ExpertPoolBench)
            see mesh-launcher/README.md for every option""";

    private Main() {}

    /** The commands and their one-line descriptions, for the usage and each command's --help. */
    public static final java.util.Map<String, String> COMMANDS = new java.util.LinkedHashMap<>();
    static {
        COMMANDS.put("serve", "The whole mesh on this machine (Kafka broker child process unless --kafka); Ctrl-C stops it.");
        COMMANDS.put("router", "The public API: gRPC (lightmesh.v1.Inference) and HTTP (OpenAI API, /q/health/*); its Quarkus app.");
        COMMANDS.put("prefill", "A prefill worker (member of the Kafka consumer group); its Quarkus app.");
        COMMANDS.put("decode", "A decode worker (state transfer + decode gRPC); its Quarkus app.");
        COMMANDS.put("expert", "An expert shard (expert gRPC); its Quarkus app.");
        COMMANDS.put("kafka", "A one-node KRaft Kafka broker for trying the services by hand.");
        COMMANDS.put("bench-serve", "The serving benchmark (BenchServe).");
        COMMANDS.put("bench-pool", "The elastic expert pool under a skewed load: static vs balanced placement (ExpertPoolBench).");
    }

    /** As {@link #run}; a wrong command line prints its message and exits 2, {@code --help} exits 0. */
    public static void main(String[] args) throws Exception {
        try {
            run(args);
        } catch (UsageException e) {
            if (!e.helpShown()) System.err.println("lightmesh-mesh: " + e.getMessage());
            System.exit(e.exitCode());
        }
    }

    /**
     * Runs a command until it ends (or, for the long-running ones, until this process is stopped).
     *
     * @throws UsageException a wrong command line, or {@code --help} (the usage printed)
     */
    public static void run(String[] args) throws Exception {
        String cmd = args.length == 0 || args[0].startsWith("--") ? "serve" : args[0];
        int from = args.length > 0 && !args[0].startsWith("--") ? 1 : 0;
        AutoCloseable running = switch (cmd) {
            case "serve" -> serve(args, from);
            case "router", "prefill", "decode", "expert" -> {
                service(cmd, serviceFlags(cmd, args, from));
                yield null;
            }
            case "kafka" -> {
                Flags f = flags("kafka", args, from, "port", "dir");
                KraftBroker b = KraftBroker.start(Path.of(f.get("dir", "lightmesh-kafka")), f.getInt("port", 9092));
                System.out.println("lightmesh: Kafka broker (KRaft, one node) at " + b.bootstrapServers() + ", data in " + f.get("dir", "lightmesh-kafka"));
                yield b;
            }
            case "bench-serve" -> {
                BenchServe.main(java.util.Arrays.copyOfRange(args, from, args.length));
                yield null;
            }
            case "bench-pool" -> {
                ExpertPoolBench.main(java.util.Arrays.copyOfRange(args, from, args.length));
                yield null;
            }
            case "-h", "--help", "help" -> {
                System.out.println(USAGE);
                yield null;
            }
            default -> throw new UsageException(unknownCommand(cmd, COMMANDS.keySet()) + "\n" + USAGE);
        };
        if (running != null) blockUntilStopped(running);
    }

    /** The command's flags, its usage headed by its description. */
    static Flags flags(String command, String[] args, int from, String... known) {
        return new Flags(command, COMMANDS.get(command), System.out, args, from, known);
    }

    /** "unknown command 'x'", with picocli's suggestion of the nearest command on a typo. */
    static String unknownCommand(String given, java.util.Collection<String> commands) {
        picocli.CommandLine.Model.CommandSpec spec = picocli.CommandLine.Model.CommandSpec.create().name("lightmesh");
        for (String c : commands) spec.addSubcommand(c, picocli.CommandLine.Model.CommandSpec.create().name(c));
        StringBuilder sb = new StringBuilder("unknown command '" + given + "'");
        try {
            new picocli.CommandLine(spec).parseArgs(given);
        } catch (picocli.CommandLine.UnmatchedArgumentException e) {
            java.io.StringWriter w = new java.io.StringWriter();
            picocli.CommandLine.UnmatchedArgumentException.printSuggestions(e, new java.io.PrintWriter(w, true));
            if (!w.toString().isBlank()) sb.append("\n").append(w.toString().strip());
        } catch (picocli.CommandLine.ParameterException ignored) {
            // nothing to suggest
        }
        return sb.toString();
    }

    /** The flags of each single-service command: its Quarkus application's lightmesh.* keys. */
    static Flags serviceFlags(String service, String[] args, int from) {
        return switch (service) {
            case "router" -> flags("router", args, from, "model", "kafka", "decode", "experts", "host", "grpc-port", "http-port",
                    "topic", "partitions", "prefill-group", "max-in-flight", "default-max-new-tokens", "max-prompt-tokens", "max-resumes",
                    "poll-ms", "api-key", "max-new-tokens", "max-messages", "max-tools", "max-stop-strings", "max-stop-chars",
                    "expert-slots", "rebalance-interval-s", "imbalance-threshold", "autoscale-experts", "expert-target-utilisation",
                    "placement-controller", "placement-describe-ms", "placement-describe-max-ms", "placement-misses-to-drop");
            case "prefill" -> flags("prefill", args, from, "model", "kafka", "experts", "id", "topic", "prefill-group",
                    "chunk-bytes", "prefill-batch-tokens", "prefill-batch-max", "prefix-cache-gib", "backend", "host", "http-port", "placement");
            case "decode" -> flags("decode", args, from, "model", "experts", "id", "host", "grpc-port", "http-port", "advertise",
                    "budget-gib", "max-batch", "state-wait-ms", "backend", "placement");
            case "expert" -> flags("expert", args, from, "model", "shard", "id", "host", "grpc-port", "http-port", "advertise",
                    "layers", "backend", "expert-slots", "expert-memory-gib");
            default -> throw new IllegalArgumentException("not a service: " + service);
        };
    }

    private static void blockUntilStopped(AutoCloseable running) throws InterruptedException {
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.err.println("lightmesh: stopping");
            try { running.close(); } catch (Exception e) { System.err.println("lightmesh: while stopping: " + e); }
            stop.countDown();
        }));
        stop.await();
    }

    // ---- serve: everything on this machine ----

    static AutoCloseable serve(String[] args, int from) throws Exception {
        Flags f = flags("serve", args, from, "model", "http-port", "grpc-port", "kafka", "experts", "decode", "prefill",
                "max-batch", "budget-gib", "prefix-cache-gib", "backend", "autoscale-experts", "expert-slots", "rebalance-interval-s", "imbalance-threshold",
                "api-key");
        EmbeddedMesh.ExpertPool pool = expertPool(f);
        EmbeddedMesh.Options d = EmbeddedMesh.Options.defaults(Path.of(f.get("model", "models/demo")));
        int shards = f.getInt("experts", pool.autoscale() ? pool.minShards() : d.expertShards());
        if (pool.autoscale() && (shards < pool.minShards() || shards > pool.maxShards())) {
            throw new IllegalArgumentException("serve: --experts " + shards + " is outside --autoscale-experts " + pool.minShards() + ":" + pool.maxShards());
        }
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(d.modelDir(), "127.0.0.1", f.getInt("grpc-port", d.grpcPort()),
                f.getInt("http-port", d.httpPort()), f.get("kafka", null), null, shards,
                f.getInt("decode", 1), f.getInt("prefill", 1), (long) (f.getDouble("budget-gib", 8) * (1L << 30)),
                f.getInt("max-batch", d.maxBatch()), d.topic(), d.maxInFlight(), d.defaultMaxNewTokens(), f.get("backend", "auto"),
                f.get("prefix-cache-gib", null) == null ? d.prefixCacheBytes() : gib(f.getDouble("prefix-cache-gib", 0), "prefix-cache-gib"));
        String apiKey = f.get("api-key", null); // also LIGHTMESH_API_KEY, so that the key need not show in `ps`
        EmbeddedMesh mesh = EmbeddedMesh.start(o, pool, MeshTelemetry::fromEnvironment, EmbeddedMesh.ShardSetup.roundRobin(), apiKey);
        boolean ready = mesh.awaitReady(60_000);
        System.out.println("lightmesh mesh " + (ready ? "ready" : "NOT ready (see GET /q/health/ready)"));
        System.out.println("  gRPC   " + mesh.routerTarget() + "  (lightmesh.v1.Inference)");
        System.out.println("  HTTP   http://127.0.0.1:" + mesh.httpPort() + "/v1 (OpenAI API), /q/health/ready"
                + (mesh.placementController() != null ? ", /admin/placement" : ""));
        System.out.println("  Kafka  " + mesh.kafkaBootstrap());
        if (apiKey != null) System.out.println("  API key required: 'Authorization: Bearer <key>' (HTTP), metadata 'authorization: Bearer <key>' (gRPC)");
        mesh.experts().forEach(e -> System.out.println("  expert " + e.id() + " " + e.address()));
        mesh.decoders().forEach(e -> System.out.println("  decode " + e.id() + " " + e.address()));
        return mesh;
    }

    /** GiB as bytes; negative is refused. */
    static long gib(double g, String flag) {
        if (!(g >= 0)) throw new IllegalArgumentException("--" + flag + " must be >= 0, got " + g);
        return (long) (g * (1L << 30));
    }

    /** The expert pool flags of serve: --expert-slots, --autoscale-experts MIN:MAX, --rebalance-interval-s, --imbalance-threshold. */
    static EmbeddedMesh.ExpertPool expertPool(Flags f) {
        EmbeddedMesh.ExpertPool d = EmbeddedMesh.ExpertPool.defaults();
        int slots = f.getInt("expert-slots", d.extraSlots()); // default -1: two per layer
        if (slots < -1 || f.get("expert-slots", null) != null && slots < 0) throw new IllegalArgumentException("serve: --expert-slots must be >= 0, got " + slots);
        double window = f.getDouble("rebalance-interval-s", d.windowMs() / 1000.0);
        if (!(window >= 1)) throw new IllegalArgumentException("serve: --rebalance-interval-s must be >= 1, got " + window);
        double threshold = f.getDouble("imbalance-threshold", d.imbalanceThreshold());
        if (!(threshold >= 1)) throw new IllegalArgumentException("serve: --imbalance-threshold must be >= 1 (max / mean shard load), got " + threshold);
        int min = 0, max = 0;
        String range = f.get("autoscale-experts", null);
        if (range != null) {
            try {
                int[] r = io.lightmesh.router.placement.ShardDemand.parseRange(range);
                min = r[0];
                max = r[1];
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("serve: --autoscale-experts: " + e.getMessage());
            }
        }
        return new EmbeddedMesh.ExpertPool(slots, min, max, d.pollMs(), Math.round(window * 1000), threshold, d.drainGraceMs(), d.targetUtilisation());
    }

    // ---- one service per process: the service's Quarkus application ----

    /**
     * Runs {@code service}'s Quarkus application ({@link QuarkusApps}) with the flags as its {@code lightmesh.*}
     * keys, until it exits or this process is stopped; exits with its status.
     */
    private static void service(String service, Flags f) throws Exception {
        int rc = QuarkusApps.run(service, f.given());
        if (rc != 0) System.exit(rc);
    }
}
