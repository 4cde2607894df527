package io.lightmesh.launcher;

import io.grpc.Server;
import io.lightmesh.decode.DecodeWorker;
import io.lightmesh.engine.backend.Backends;
import io.lightmesh.expert.ExpertShard;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.openai.OpenAiOptions;
import io.lightmesh.prefill.PrefillWorker;
import io.lightmesh.router.RouterCore;
import io.opentelemetry.api.OpenTelemetry;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.logging.Logger;

/**
 * The mesh's processes. {@code serve} runs the whole mesh on one machine; {@code router}, {@code prefill},
 * {@code decode} and {@code expert} run one service each, for real deployments (one per process, container or
 * host). Every option can also come from the environment: {@code --max-batch 32} or {@code LIGHTMESH_MAX_BATCH=32}.
 * OpenTelemetry is configured by the standard {@code OTEL_*} variables (see {@link MeshTelemetry}). The services
 * run until SIGTERM / Ctrl-C. The full reference is in mesh-launcher/README.md.
 *
 * <pre>
 * serve   [--model DIR] [--grpc-port 9000] [--http-port 8080] [--kafka HOST:PORT] [--experts N] [--decode N]
 *         [--prefill N] [--max-batch N] [--budget-gib G] [--backend B]
 * router  --model DIR --kafka HOST:PORT --decode HOST:PORT,... [--experts HOST:PORT,...] [--host 0.0.0.0]
 *         [--grpc-port 9000] [--http-port 8080] [--topic T] [--partitions N] [--prefill-group G] [--max-in-flight N]
 *         [--default-max-new-tokens N] [--max-prompt-tokens N] [--max-resumes N] [--poll-ms N] [--api-key KEY]
 * prefill --model DIR --kafka HOST:PORT [--experts HOST:PORT,...] [--id prefill-0] [--topic T] [--prefill-group G]
 *         [--chunk-bytes N] [--prefill-batch-tokens N] [--prefill-batch-max N] [--backend B]
 * decode  --model DIR [--experts HOST:PORT,...] [--id decode-0] [--host 0.0.0.0] [--grpc-port 9100]
 *         [--advertise HOST:PORT] [--budget-gib G] [--max-batch N] [--state-wait-ms N] [--backend B]
 * expert  --model DIR --shard I/N [--id expert-I] [--host 0.0.0.0] [--grpc-port 9200] [--advertise HOST:PORT]
 *         [--layers 0,1,...] [--backend B]
 * kafka   [--port 9092] [--dir lightmesh-kafka]     (a one-node broker for trying the services by hand)
 * </pre>
 */
public final class Main {
    private static final Logger LOG = Logger.getLogger(Main.class.getName());

    static final String USAGE = """
            usage: lightmesh-mesh <command> [options]     (each option also as LIGHTMESH_<NAME>, e.g. LIGHTMESH_KAFKA)
              serve    the whole mesh on this machine (Kafka broker child process unless --kafka)
              router   the public API: gRPC (lightmesh.v1.Inference) and HTTP (OpenAI API, /q/health/*)
              prefill  a prefill worker (member of the Kafka consumer group)
              decode   a decode worker (state transfer + decode gRPC)
              expert   an expert shard (expert gRPC)
              kafka    a one-node KRaft Kafka broker for trying the services by hand (--port 9092 --dir DIR)
              bench-serve  the serving benchmark (see BenchServe)
            see mesh-launcher/README.md for every option""";

    private Main() {}

    public static void main(String[] args) throws Exception {
        String cmd = args.length == 0 || args[0].startsWith("--") ? "serve" : args[0];
        int from = args.length > 0 && !args[0].startsWith("--") ? 1 : 0;
        AutoCloseable running = switch (cmd) {
            case "serve" -> serve(args, from);
            case "router" -> router(new Flags("router", args, from, "model", "kafka", "decode", "experts", "host", "grpc-port", "http-port",
                    "topic", "partitions", "prefill-group", "max-in-flight", "default-max-new-tokens", "max-prompt-tokens", "max-resumes",
                    "poll-ms", "api-key"));
            case "prefill" -> prefill(new Flags("prefill", args, from, "model", "kafka", "experts", "id", "topic", "prefill-group",
                    "chunk-bytes", "prefill-batch-tokens", "prefill-batch-max", "backend"));
            case "decode" -> decode(new Flags("decode", args, from, "model", "experts", "id", "host", "grpc-port", "advertise",
                    "budget-gib", "max-batch", "state-wait-ms", "backend"));
            case "expert" -> expert(new Flags("expert", args, from, "model", "shard", "id", "host", "grpc-port", "advertise", "layers",
                    "backend"));
            case "kafka" -> {
                Flags f = new Flags("kafka", args, from, "port", "dir");
                KraftBroker b = KraftBroker.start(Path.of(f.get("dir", "lightmesh-kafka")), f.getInt("port", 9092));
                System.out.println("lightmesh: Kafka broker (KRaft, one node) at " + b.bootstrapServers() + ", data in " + f.get("dir", "lightmesh-kafka"));
                yield b;
            }
            case "bench-serve" -> {
                BenchServe.main(java.util.Arrays.copyOfRange(args, from, args.length));
                yield null;
            }
            case "-h", "--help", "help" -> {
                System.out.println(USAGE);
                yield null;
            }
            default -> throw new IllegalArgumentException("unknown command '" + cmd + "'\n" + USAGE);
        };
        if (running != null) blockUntilStopped(running);
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

    /** Closes what was started, last first. */
    private static final class Stack implements AutoCloseable {
        private final List<AutoCloseable> parts = new ArrayList<>();

        <T extends AutoCloseable> T add(T c) { parts.add(c); return c; }

        @Override
        public void close() {
            for (int i = parts.size() - 1; i >= 0; i--) {
                try { parts.get(i).close(); } catch (Exception e) { LOG.warning("closing " + parts.get(i) + ": " + e); }
            }
        }
    }

    private static AutoCloseable server(Server s) { return () -> Grpc.shutdown(s); }

    private static AutoCloseable telemetry(OpenTelemetry o) {
        return () -> { if (o instanceof io.opentelemetry.sdk.OpenTelemetrySdk sdk) sdk.close(); };
    }

    private static MeshModel load(Flags f, boolean needBackend) throws Exception {
        String backend = needBackend ? f.get("backend", "auto") : "reference"; // the router never runs the model
        return MeshModel.load(Path.of(f.required("model")), Backends.create(backend));
    }

    // ---- serve: everything on this machine ----

    static AutoCloseable serve(String[] args, int from) throws Exception {
        Flags f = new Flags("serve", args, from, "model", "http-port", "grpc-port", "kafka", "experts", "decode", "prefill",
                "max-batch", "budget-gib", "backend");
        EmbeddedMesh.Options d = EmbeddedMesh.Options.defaults(Path.of(f.get("model", "models/demo")));
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(d.modelDir(), "127.0.0.1", f.getInt("grpc-port", d.grpcPort()),
                f.getInt("http-port", d.httpPort()), f.get("kafka", null), null, f.getInt("experts", d.expertShards()),
                f.getInt("decode", 1), f.getInt("prefill", 1), (long) (f.getDouble("budget-gib", 8) * (1L << 30)),
                f.getInt("max-batch", d.maxBatch()), d.topic(), d.maxInFlight(), d.defaultMaxNewTokens(), f.get("backend", "auto"));
        EmbeddedMesh mesh = EmbeddedMesh.start(o);
        boolean ready = mesh.awaitReady(60_000);
        System.out.println("lightmesh mesh " + (ready ? "ready" : "NOT ready (see GET /q/health/ready)"));
        System.out.println("  gRPC   " + mesh.routerTarget() + "  (lightmesh.v1.Inference)");
        System.out.println("  HTTP   http://127.0.0.1:" + mesh.httpPort() + "/v1 (OpenAI API), /q/health/ready");
        System.out.println("  Kafka  " + mesh.kafkaBootstrap());
        mesh.experts().forEach(e -> System.out.println("  expert " + e.id() + " " + e.address()));
        mesh.decoders().forEach(e -> System.out.println("  decode " + e.id() + " " + e.address()));
        return mesh;
    }

    // ---- one service per process ----

    /** The router: validates, queues on Kafka, relays tokens; gRPC on --grpc-port, OpenAI API and health on --http-port. */
    static AutoCloseable router(Flags f) throws Exception {
        Stack st = new Stack();
        try {
            MeshModel model = st.add(load(f, false));
            OpenTelemetry otel = MeshTelemetry.fromEnvironment("lightmesh-router");
            st.add(telemetry(otel));
            List<String> decode = f.list("decode");
            if (decode.isEmpty()) throw new IllegalArgumentException("router: --decode HOST:PORT,... (or LIGHTMESH_DECODE) is required");
            RouterCore router = st.add(new RouterCore(new RouterCore.Settings(f.required("kafka"), f.get("topic", "lightmesh.requests.v1"),
                    f.getInt("partitions", 16), f.get("prefill-group", "lightmesh-prefill"), decode, f.list("experts"),
                    f.getInt("max-in-flight", 256), f.getInt("default-max-new-tokens", 256), f.getInt("max-prompt-tokens", 1 << 20),
                    f.getInt("max-resumes", 2), f.getInt("poll-ms", 1000)), model, otel));
            String host = f.get("host", "0.0.0.0");
            String apiKey = f.get("api-key", null);
            Server grpc = Grpc.serve(host, f.getInt("grpc-port", 9000), io.lightmesh.router.ApiKeyCheck.protect(router.services(), apiKey));
            st.add(server(grpc));
            String self = "127.0.0.1:" + grpc.getPort();
            OpenAiOptions api = OpenAiOptions.defaults().withApiKey(apiKey);
            HttpFront http = st.add(HttpFront.start(host, f.getInt("http-port", 8080), self, router::health, api));
            LOG.info("router: gRPC on " + host + ":" + grpc.getPort() + ", HTTP on " + host + ":" + http.port() + ", decode " + decode);
            return st;
        } catch (Exception e) {
            st.close();
            throw e;
        }
    }

    /** A prefill worker: consumes the request topic, prefills, hands the state to the decode worker the router chose. */
    static AutoCloseable prefill(Flags f) throws Exception {
        Stack st = new Stack();
        try {
            MeshModel model = st.add(load(f, true));
            OpenTelemetry otel = MeshTelemetry.fromEnvironment("lightmesh-prefill");
            st.add(telemetry(otel));
            ExpertPlacement placement = placement(f, model);
            List<RemoteExperts> remotes = new ArrayList<>();
            var worker = Services.workerModel(model, placement, otel, remotes::add);
            remotes.forEach(st::add);
            String id = f.get("id", "prefill-" + ProcessHandle.current().pid());
            st.add(new PrefillWorker(new PrefillWorker.Settings(id, f.required("kafka"), f.get("topic", "lightmesh.requests.v1"),
                    f.get("prefill-group", "lightmesh-prefill"), f.getInt("chunk-bytes", StateCodec.DEFAULT_CHUNK_BYTES), 30_000, 50,
                    f.getInt("prefill-batch-tokens", PrefillWorker.Settings.DEFAULT_BATCH_TOKENS),
                    f.getInt("prefill-batch-max", PrefillWorker.Settings.DEFAULT_BATCH_MAX)),
                    model, worker, otel));
            LOG.info("prefill worker " + id + ": experts " + (placement == null ? "in-process" : "on " + f.list("experts")));
            return st;
        } catch (Exception e) {
            st.close();
            throw e;
        }
    }

    /** A decode worker: receives states, decodes with continuous batching, streams tokens to the router. */
    static AutoCloseable decode(Flags f) throws Exception {
        Stack st = new Stack();
        try {
            MeshModel model = st.add(load(f, true));
            OpenTelemetry otel = MeshTelemetry.fromEnvironment("lightmesh-decode");
            st.add(telemetry(otel));
            ExpertPlacement placement = placement(f, model);
            List<RemoteExperts> remotes = new ArrayList<>();
            var worker = Services.workerModel(model, placement, otel, remotes::add);
            remotes.forEach(st::add);
            String host = f.get("host", "0.0.0.0");
            int port = f.getInt("grpc-port", 9100);
            String id = f.get("id", "decode-0");
            String advertise = f.get("advertise", (host.equals("0.0.0.0") ? java.net.InetAddress.getLocalHost().getHostName() : host) + ":" + port);
            DecodeWorker w = st.add(new DecodeWorker(new DecodeWorker.Settings(id, advertise, (long) (f.getDouble("budget-gib", 8) * (1L << 30)),
                    f.getInt("max-batch", 32), f.getInt("state-wait-ms", 120_000)), model, worker, placement != null, otel));
            Server s = Grpc.serve(host, port, w.services());
            st.add(server(s));
            LOG.info("decode worker " + id + " on " + host + ":" + s.getPort() + " (advertised " + advertise + "), experts "
                    + (placement == null ? "in-process" : "on " + f.list("experts")));
            return st;
        } catch (Exception e) {
            st.close();
            throw e;
        }
    }

    /** An expert shard: --shard I/N holds the experts e with e % N == I (of --layers, default all). */
    static AutoCloseable expert(Flags f) throws Exception {
        Stack st = new Stack();
        try {
            MeshModel model = st.add(load(f, true));
            OpenTelemetry otel = MeshTelemetry.fromEnvironment("lightmesh-expert");
            st.add(telemetry(otel));
            String[] shard = f.required("shard").split("/");
            if (shard.length != 2) throw new IllegalArgumentException("expert: --shard must be I/N, e.g. 0/2");
            int index = Integer.parseInt(shard[0].trim()), count = Integer.parseInt(shard[1].trim());
            int[] experts = ExpertPlacement.expertsOf(index, count, model.config().numExperts());
            int[] layers = f.list("layers").stream().mapToInt(Integer::parseInt).toArray();
            String host = f.get("host", "0.0.0.0");
            int port = f.getInt("grpc-port", 9200);
            String id = f.get("id", "expert-" + index);
            String advertise = f.get("advertise", (host.equals("0.0.0.0") ? java.net.InetAddress.getLocalHost().getHostName() : host) + ":" + port);
            ExpertShard s = new ExpertShard(new ExpertPlacement.Shard(id, advertise, layers, experts), model, otel);
            Server server = Grpc.serve(host, port, s.services(), true);
            st.add(server(server));
            LOG.info("expert shard " + id + " on " + host + ":" + server.getPort() + ": experts " + java.util.Arrays.toString(experts)
                    + " of " + (layers.length == 0 ? "every layer" : "layers " + java.util.Arrays.toString(layers)));
            return st;
        } catch (Exception e) {
            st.close();
            throw e;
        }
    }

    /** The shards of --experts, asked for what they hold; null when the experts run in-process. */
    private static ExpertPlacement placement(Flags f, MeshModel model) throws InterruptedException {
        List<String> targets = f.list("experts");
        return targets.isEmpty() ? null : Services.discover(model, targets, 120_000);
    }
}
