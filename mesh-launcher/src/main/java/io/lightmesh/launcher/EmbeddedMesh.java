package io.lightmesh.launcher;

import io.grpc.BindableService;
import io.grpc.Server;
import io.lightmesh.decode.DecodeWorker;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.expert.ExpertShard;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.LivePlacement;
import io.lightmesh.mesh.PlacementSource;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.MeshTelemetry;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.mesh.Services;
import io.lightmesh.prefill.PrefillWorker;
import io.lightmesh.proto.v1.ComponentHealth;
import io.lightmesh.proto.v1.HealthResponse;
import io.lightmesh.proto.v1.ServingStatus;
import io.lightmesh.router.ApiKeyCheck;
import io.lightmesh.router.RouterCore;
import io.lightmesh.router.placement.PlacementController;
import io.lightmesh.router.placement.ShardDemand;
import io.lightmesh.router.placement.ShardPool;

import io.lightmesh.openai.OpenAiOptions;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import io.opentelemetry.api.OpenTelemetry;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * The whole mesh on one machine: (optionally) a KRaft broker child process, expert shards, decode and prefill
 * workers and the router, each service on its own gRPC server on loopback, talking to each other only over gRPC
 * and Kafka, exactly as separate processes would. They share one memory-mapped model in this JVM.
 *
 * <p>The router answers the public API on {@code grpcPort}, and on {@code httpPort} ({@link HttpFront}) the
 * OpenAI-compatible API and {@code GET /q/health/ready} (UP only when Kafka, a prefill worker, a decode worker and
 * shards for every expert are reachable).
 */
public final class EmbeddedMesh implements AutoCloseable {

    /**
     * @param kafka         bootstrap servers of an existing cluster; null starts a broker child process
     * @param expertShards  0: experts inside the prefill/decode workers (aggregated); n: n remote shards
     */
    /**
     * @param backend     the engine backend for every service: auto, reference, vector or opencl (as the CLI's --backend)
     * @param prefixCacheBytes budget of each prefill worker's prefix cache; 0: off
     */
    public record Options(Path modelDir, String host, int grpcPort, int httpPort, String kafka, Path workDir,
                          int expertShards, int decodeWorkers, int prefillWorkers, long decodeBudgetBytes, int maxBatch,
                          String topic, int maxInFlight, int defaultMaxNewTokens, String backend, long prefixCacheBytes) {
        /** The default prefix cache ({@link io.lightmesh.engine.prefix.PrefixCache#defaultBytes}). */
        public Options(Path modelDir, String host, int grpcPort, int httpPort, String kafka, Path workDir,
                       int expertShards, int decodeWorkers, int prefillWorkers, long decodeBudgetBytes, int maxBatch,
                       String topic, int maxInFlight, int defaultMaxNewTokens, String backend) {
            this(modelDir, host, grpcPort, httpPort, kafka, workDir, expertShards, decodeWorkers, prefillWorkers,
                    decodeBudgetBytes, maxBatch, topic, maxInFlight, defaultMaxNewTokens, backend,
                    io.lightmesh.engine.prefix.PrefixCache.defaultBytes());
        }

        /** The options of the first version: the reference backend. */
        public Options(Path modelDir, String host, int grpcPort, int httpPort, String kafka, Path workDir,
                       int expertShards, int decodeWorkers, int prefillWorkers, long decodeBudgetBytes, int maxBatch,
                       String topic, int maxInFlight, int defaultMaxNewTokens) {
            this(modelDir, host, grpcPort, httpPort, kafka, workDir, expertShards, decodeWorkers, prefillWorkers,
                    decodeBudgetBytes, maxBatch, topic, maxInFlight, defaultMaxNewTokens, "reference");
        }

        public static Options defaults(Path modelDir) {
            return new Options(modelDir, "127.0.0.1", 9000, 8080, null, null, 2, 1, 1, 8L << 30, 32,
                    "lightmesh.requests.v1", 256, 256, "auto");
        }

        public Options withBackend(String b) {
            return new Options(modelDir, host, grpcPort, httpPort, kafka, workDir, expertShards, decodeWorkers, prefillWorkers,
                    decodeBudgetBytes, maxBatch, topic, maxInFlight, defaultMaxNewTokens, b, prefixCacheBytes);
        }

        /** The same with each prefill worker's prefix cache of {@code bytes} (0: off). */
        public Options withPrefixCacheBytes(long bytes) {
            return new Options(modelDir, host, grpcPort, httpPort, kafka, workDir, expertShards, decodeWorkers, prefillWorkers,
                    decodeBudgetBytes, maxBatch, topic, maxInFlight, defaultMaxNewTokens, backend, bytes);
        }
    }

    /**
     * The elastic expert pool: the placement controller's settings (see PlacementController.Settings) and, with
     * {@code maxShards > 0}, autoscaling between {@code minShards} and {@code maxShards} in-process shards.
     *
     * @param extraSlots expert copies (one (layer, expert) each) a shard may hold beyond its share, spread evenly over
     *                   the layers (--expert-slots); -1: two per layer
     */
    public record ExpertPool(int extraSlots, int minShards, int maxShards, long pollMs, long windowMs, double imbalanceThreshold,
                             long drainGraceMs, double targetUtilisation) {
        /** Two spare slots per layer, no autoscaling, poll 1 s, 60 s window, threshold 1.25, 10 s grace, 70% target utilisation. */
        public static ExpertPool defaults() { return new ExpertPool(-1, 0, 0, 1000, 60_000, 1.25, 10_000, 0.7); }

        public boolean autoscale() { return maxShards > 0; }

        PlacementController.Settings controllerSettings() {
            PlacementController.Settings d = PlacementController.Settings.defaults();
            return new PlacementController.Settings(pollMs, windowMs, imbalanceThreshold, extraSlots, drainGraceMs, d.rpcTimeoutMs(),
                    autoscale() ? new ShardDemand(targetUtilisation, minShards, maxShards) : new ShardDemand(targetUtilisation, 1, Integer.MAX_VALUE));
        }
    }

    /** A running worker and its gRPC server, killable by tests. */
    public record Component<T>(String id, String address, T worker, Server server) {}

    /**
     * How the expert shards start: the (layer, expert) pairs shard i holds (null: its round-robin share of every
     * layer) and the expert copies each may hold ({@link ExpertShard}'s slot capacity).
     */
    public record ShardSetup(java.util.function.IntFunction<Map<Integer, int[]>> holdings, int slotCapacity) {
        /** Round-robin shares, no slot limit: the mesh of the first version. */
        public static ShardSetup roundRobin() { return new ShardSetup(null, Integer.MAX_VALUE); }

        /** Every shard holds every expert of every layer (each expert replicated on every shard). */
        public static ShardSetup replicated(int numLayers, int numExperts) {
            Map<Integer, int[]> all = new HashMap<>();
            for (int l = 0; l < numLayers; l++) all.put(l, java.util.stream.IntStream.range(0, numExperts).toArray());
            return new ShardSetup(i -> all, Integer.MAX_VALUE);
        }
    }

    private final Options options;
    private final MeshModel model;
    /**
     * The expert shards' own load of the model, on a backend of their own ({@code -Dlightmesh.serve.shardBackend=own}:
     * on OpenCL its own context and command queue, as a shard in a process of its own has): the workers' device
     * operations are then no longer one monitor and one in-order queue with the shards'. Null: the shards share
     * {@link #model} (the default).
     */
    private MeshModel shardModel;
    private final Function<String, OpenTelemetry> telemetry;
    private final Map<String, OpenTelemetry> otels = new HashMap<>();
    private KraftBroker broker;
    private final List<Component<ExpertShard>> experts = new java.util.concurrent.CopyOnWriteArrayList<>();
    private final ExpertPool pool;
    private PlacementController controller;
    private LivePlacement livePlacement;
    private final List<Component<DecodeWorker>> decoders = new ArrayList<>();
    private final List<PrefillWorker> prefillers = new ArrayList<>();
    private final List<RemoteExperts> remotes = new ArrayList<>();
    private RouterCore router;
    private Server routerServer;
    private HttpFront http;
    private String bootstrap;
    /** The broker's folder when this mesh made it (no workDir given): removed on close. */
    private Path tempDir;

    private final ShardSetup shardSetup;
    /** The public API's key; null: none. */
    private String apiKey;

    /** @param pool the placement controller's settings; null: no controller (workers route by the fixed map) */
    private EmbeddedMesh(Options options, ExpertPool pool, MeshModel model, Function<String, OpenTelemetry> telemetry, ShardSetup shardSetup) {
        this.options = options;
        this.pool = pool;
        this.model = model;
        this.telemetry = telemetry;
        this.shardSetup = shardSetup;
    }

    private boolean ownsTelemetry; // made from the environment here, so flushed and closed here

    /** Starts the mesh with OpenTelemetry set up from the OTEL_* environment ({@link MeshTelemetry#fromEnvironment}). */
    public static EmbeddedMesh start(Options o) throws IOException, InterruptedException {
        EmbeddedMesh m = start(o, MeshTelemetry::fromEnvironment);
        m.ownsTelemetry = true;
        return m;
    }

    /**
     * @param telemetry the OpenTelemetry of each kind of service, by service name ("lightmesh-router",
     *                  "lightmesh-prefill", "lightmesh-decode", "lightmesh-expert"); asked once per name
     */
    public static EmbeddedMesh start(Options o, Function<String, OpenTelemetry> telemetry) throws IOException, InterruptedException {
        return start(o, ExpertPool.defaults(), telemetry, ShardSetup.roundRobin());
    }

    /** As {@link #start(Options, Function)}, with the expert pool's controller settings. */
    public static EmbeddedMesh start(Options o, ExpertPool pool, Function<String, OpenTelemetry> telemetry) throws IOException, InterruptedException {
        return start(o, pool, telemetry, ShardSetup.roundRobin());
    }

    /**
     * Without a placement controller: workers route by the fixed map of the shards' holdings (failover among its
     * replicas only).
     *
     * @param shards what each expert shard holds at start, and its slot capacity
     */
    public static EmbeddedMesh start(Options o, Function<String, OpenTelemetry> telemetry, ShardSetup shards) throws IOException, InterruptedException {
        return start(o, null, telemetry, shards);
    }

    /** @param pool null: no placement controller */
    public static EmbeddedMesh start(Options o, ExpertPool pool, Function<String, OpenTelemetry> telemetry, ShardSetup shards) throws IOException, InterruptedException {
        return start(o, pool, telemetry, shards, null);
    }

    /**
     * @param apiKey when set, the public API wants {@code authorization: Bearer <apiKey>}: gRPC calls without it end
     *               UNAUTHENTICATED ({@link ApiKeyCheck}; Health stays open), HTTP requests to /v1 and /admin get 401
     *               (the health pages stay open); null or empty: no key
     */
    public static EmbeddedMesh start(Options o, ExpertPool pool, Function<String, OpenTelemetry> telemetry, ShardSetup shards,
                                     String apiKey) throws IOException, InterruptedException {
        if (pool != null && pool.autoscale() && o.expertShards() == 0) throw new IllegalArgumentException("autoscaling experts needs remote expert shards (--experts N > 0)");
        // with expert shards, the shared model's in-process experts reach a device only if run (the shards hold their own)
        EmbeddedMesh m = new EmbeddedMesh(o, pool, MeshModel.load(o.modelDir(), io.lightmesh.engine.backend.Backends.create(o.backend()), o.expertShards() == 0), telemetry, shards);
        m.apiKey = apiKey == null || apiKey.isEmpty() ? null : apiKey;
        try {
            m.startAll();
            return m;
        } catch (IOException | InterruptedException | RuntimeException e) {
            m.close();
            throw e;
        }
    }

    private void startAll() throws IOException, InterruptedException {
        bootstrap = options.kafka();
        if (bootstrap == null) {
            Path dir = options.workDir();
            if (dir == null) dir = tempDir = Files.createTempDirectory("lightmesh-kafka");
            broker = KraftBroker.start(dir.resolve("kafka"), 0);
            bootstrap = broker.bootstrapServers();
        }
        String host = options.host();
        List<String> expertAddresses = new ArrayList<>();
        for (int i = 0; i < options.expertShards(); i++) {
            Map<Integer, int[]> held = shardSetup.holdings() == null ? null : shardSetup.holdings().apply(i);
            expertAddresses.add(addExpertShard("expert-" + i, held, shardSetup.slotCapacity()).address());
        }
        ExpertPlacement placement = options.expertShards() == 0 ? null : staticPlacement();
        if (placement != null && pool != null) startController(expertAddresses, placement);
        List<String> decodeAddresses = new ArrayList<>();
        for (int i = 0; i < options.decodeWorkers(); i++) {
            int port = KraftBroker.freePort();
            String address = host + ":" + port;
            DecodeWorker w = new DecodeWorker(new DecodeWorker.Settings("decode-" + i, address, options.decodeBudgetBytes(), options.maxBatch(), 120_000),
                    model, modelFor(placement, "lightmesh-decode"), placement != null, otel("lightmesh-decode"));
            decoders.add(new Component<>("decode-" + i, address, w, Grpc.serve(host, port, w.services())));
            decodeAddresses.add(address);
        }
        router = new RouterCore(new RouterCore.Settings(bootstrap, options.topic(), 4, "lightmesh-prefill", decodeAddresses, expertAddresses,
                options.maxInFlight(), options.defaultMaxNewTokens(), 1 << 20, 2, 500), model, otel("lightmesh-router"));
        for (int i = 0; i < options.prefillWorkers(); i++) addPrefillWorker(placement);
        // the API key guards the public inference API only; the placement service is for workers outside this JVM
        List<BindableService> routerServices = new ArrayList<>(ApiKeyCheck.protect(router.services(), apiKey));
        if (controller != null) routerServices.add(controller.service());
        routerServer = Grpc.servePublic(host, options.grpcPort(), routerServices);
        if (options.httpPort() >= 0) startHttp();
    }

    /** Starts one more prefill worker (tests use it to replace a killed one). */
    public PrefillWorker addPrefillWorker() {
        return addPrefillWorker(options.expertShards() == 0 ? null : staticPlacement());
    }

    /**
     * Starts one more expert shard on a free loopback port.
     *
     * @param held         the (layer, expert) pairs it holds at start; null: its round-robin share as the next of
     *                     {@code options.expertShards()} shards (index = shards started so far, modulo that count)
     * @param slotCapacity expert copies it may hold
     */
    private synchronized MeshModel shardModel() throws IOException {
        if (!"own".equals(System.getProperty("lightmesh.serve.shardBackend", "shared"))) return model;
        if (shardModel == null) {
            shardModel = MeshModel.load(options.modelDir(), io.lightmesh.engine.backend.Backends.create(options.backend()), false);
            java.util.logging.Logger.getLogger(EmbeddedMesh.class.getName()).info("expert shards on a backend of their own (-Dlightmesh.serve.shardBackend=own): "
                    + io.lightmesh.engine.backend.Backends.describe(shardModel.model().ops()));
        }
        return shardModel;
    }

    public Component<ExpertShard> addExpertShard(String id, Map<Integer, int[]> held, int slotCapacity) throws IOException {
        int port = KraftBroker.freePort();
        String address = options.host() + ":" + port;
        int count = Math.max(1, options.expertShards());
        ExpertPlacement.Shard start = held != null ? ExpertPlacement.Shard.of(id, address, held)
                : new ExpertPlacement.Shard(id, address, new int[0], ExpertPlacement.expertsOf(experts.size() % count, count, model.config().numExperts()));
        ExpertShard shard = new ExpertShard(start, shardModel(), otel("lightmesh-expert"), slotCapacity);
        Component<ExpertShard> c = new Component<>(id, address, shard, shard.serve(options.host(), port));
        experts.add(c);
        return c;
    }

    /** The fixed placement of the shards started (their holdings now), version 0; what workers without a controller route by. */
    public ExpertPlacement staticPlacement() {
        return new ExpertPlacement(model.config().numLayers(), model.config().numExperts(),
                experts.stream().map(e -> e.worker().placementShard()).toList());
    }

    /** Kills an expert shard as a crash would: its server stops at once, calls on it fail. */
    public void killExpert(int i) {
        Component<ExpertShard> e = experts.get(i);
        e.server().shutdownNow();
        e.worker().close();
    }

    private PrefillWorker addPrefillWorker(ExpertPlacement placement) {
        PrefillWorker p = new PrefillWorker(new PrefillWorker.Settings("prefill-" + prefillers.size(), bootstrap, options.topic(),
                "lightmesh-prefill", io.lightmesh.mesh.StateCodec.DEFAULT_CHUNK_BYTES, 30_000, 50,
                PrefillWorker.Settings.DEFAULT_BATCH_TOKENS, PrefillWorker.Settings.DEFAULT_BATCH_MAX, options.prefixCacheBytes()), model,
                modelFor(placement, "lightmesh-prefill"), otel("lightmesh-prefill"));
        prefillers.add(p);
        return p;
    }

    private OpenTelemetry otel(String service) { return otels.computeIfAbsent(service, telemetry); }

    private MiniMaxModel modelFor(ExpertPlacement placement, String service) {
        // in-process workers follow the controller directly (no Watch stream), starting from the round-robin map
        if (placement == null) return Services.workerModel(model, (PlacementSource) null, otel(service), remotes::add);
        // a prefill worker's expert batches are PREFILL, a decode worker's DECODE (a shard's priority gate orders them)
        var callClass = service.equals("lightmesh-prefill") ? io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_PREFILL
                : io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE;
        return Services.workerModel(model, livePlacement != null ? livePlacement : PlacementSource.fixed(placement), otel(service), remotes::add, callClass);
    }

    /**
     * The placement controller over the initial shards (and, autoscaling, the ones it starts), publishing straight
     * into the workers' {@link LivePlacement}; their reports of unreachable shards go straight to it.
     */
    private void startController(List<String> initial, ExpertPlacement roundRobin) {
        List<String> addresses = List.copyOf(initial);
        controller = new PlacementController(pool.controllerSettings(), model.config().numLayers(), model.config().numExperts(),
                model.fingerprint(), () -> addresses, pool.autoscale() ? new InProcessShards() : null,
                otel("lightmesh-router").getMeter(MeshTelemetry.SCOPE));
        livePlacement = new LivePlacement(roundRobin, r -> controller.reportUnreachable(r.shard().id(), r.shard().address(), r.reason(),
                "embedded worker", r.placementVersion()));
        controller.onPublish(map -> livePlacement.publish(ExpertPlacement.fromProto(map)));
        controller.start();
    }

    /** Shards the controller starts and stops when autoscaling: in this JVM, each on its own gRPC server. */
    private final class InProcessShards implements ShardPool {
        private int next = options.expertShards();

        @Override
        public String start() throws IOException {
            return addExpertShard("expert-" + next++, java.util.Map.of(), Integer.MAX_VALUE).address();
        }

        @Override
        public void stop(String address) {
            for (Component<ExpertShard> e : experts) {
                if (e.address().equals(address)) {
                    Grpc.shutdown(e.server());
                    e.worker().close();
                    experts.remove(e);
                }
            }
        }
    }

    private void startHttp() throws IOException {
        try {
            http = HttpFront.start(options.host(), options.httpPort(), routerTarget(), router::health, OpenAiOptions.defaults().withApiKey(apiKey),
                    controller == null ? null : controller::view);
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IOException("cannot start the HTTP server on port " + options.httpPort() + ": " + e, e);
        }
    }

    /** Best effort: a file still held open is left (and named on stderr), the rest goes. */
    static void deleteTree(Path dir) {
        try (java.util.stream.Stream<Path> files = Files.walk(dir)) {
            for (Path f : files.sorted(java.util.Comparator.reverseOrder()).toList()) {
                try { Files.deleteIfExists(f); } catch (IOException e) { System.err.println("lightmesh: could not remove " + f + ": " + e.getMessage()); }
            }
        } catch (IOException e) {
            System.err.println("lightmesh: could not remove " + dir + ": " + e.getMessage());
        }
    }

    private static final com.fasterxml.jackson.databind.ObjectMapper JSON = new com.fasterxml.jackson.databind.ObjectMapper();

    /** MicroProfile Health's JSON shape, as Quarkus answers it. */
    static String healthJson(HealthResponse h, boolean up) {
        com.fasterxml.jackson.databind.node.ObjectNode o = JSON.createObjectNode().put("status", up ? "UP" : "DOWN");
        com.fasterxml.jackson.databind.node.ArrayNode checks = o.putArray("checks");
        for (ComponentHealth c : h.getComponentsList()) {
            checks.addObject().put("name", c.getName()).put("status", c.getReachable() ? "UP" : "DOWN")
                    .putObject("data").put("address", c.getAddress()).put("detail", c.getDetail());
        }
        return o.toString();
    }

    /** Blocks until the router reports SERVING (or the timeout passes); true when it does. */
    public boolean awaitReady(long timeoutMs) throws InterruptedException {
        long until = System.currentTimeMillis() + timeoutMs;
        while (System.currentTimeMillis() < until) {
            router.refresh();
            if (router.health().getStatus() == ServingStatus.SERVING_STATUS_SERVING) return true;
            Thread.sleep(200);
        }
        return false;
    }

    public String routerTarget() { return options.host() + ":" + routerServer.getPort(); }
    public int httpPort() { return http == null ? -1 : http.port(); }
    public String kafkaBootstrap() { return bootstrap; }
    /** The folder this mesh made for its broker (removed on close); null when it was given one or uses an outside Kafka. */
    public Path ownedBrokerDir() { return tempDir; }
    public MeshModel model() { return model; }
    public RouterCore router() { return router; }
    public List<Component<DecodeWorker>> decoders() { return decoders; }
    public List<Component<ExpertShard>> experts() { return experts; }
    public List<PrefillWorker> prefillers() { return prefillers; }
    public List<RemoteExperts> remoteExperts() { return remotes; }

    /** The expert placement controller; null when the experts run in-process. */
    public PlacementController placementController() { return controller; }

    /** Kills an expert shard as a crash would: its server stops at once, calls in flight on it fail. */
    public void killExpert(String id) {
        for (Component<ExpertShard> e : experts) if (e.id().equals(id)) e.server().shutdownNow();
    }

    /** Kills a decode worker as a crash would: its server stops at once, its sequences are lost. */
    public void killDecode(int i) {
        Component<DecodeWorker> d = decoders.get(i);
        d.server().shutdownNow();
        d.worker().close();
    }

    @Override
    public void close() {
        if (http != null) http.close();
        Grpc.shutdown(routerServer);
        for (PrefillWorker p : prefillers) p.close();
        if (controller != null) controller.close();
        if (router != null) router.close();
        for (Component<DecodeWorker> d : decoders) { Grpc.shutdown(d.server()); d.worker().close(); }
        for (RemoteExperts r : remotes) r.close();
        for (Component<ExpertShard> e : experts) { Grpc.shutdown(e.server()); e.worker().close(); }
        if (broker != null) broker.close();
        if (tempDir != null) deleteTree(tempDir);
        model.close();
        if (shardModel != null) shardModel.close();
        if (ownsTelemetry) for (OpenTelemetry o : otels.values()) if (o instanceof io.opentelemetry.sdk.OpenTelemetrySdk sdk) sdk.close();
    }
}
