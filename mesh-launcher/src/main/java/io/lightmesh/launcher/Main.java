package io.lightmesh.launcher;

import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

/**
 * {@code serve}: starts the embedded mesh and blocks until Ctrl-C.
 * Options: --model DIR, --http-port 8080, --grpc-port 9000, --kafka HOST:PORT (default: a broker child process),
 * --experts N (remote expert shards, default 2; 0 keeps experts inside the workers), --decode N, --prefill N,
 * --max-batch N, --budget-gib G.
 */
public final class Main {
    public static void main(String[] args) throws Exception {
        Path model = Path.of("models/demo");
        EmbeddedMesh.Options d = EmbeddedMesh.Options.defaults(model);
        String kafka = null;
        int http = d.httpPort(), grpc = d.grpcPort(), experts = d.expertShards(), decode = 1, prefill = 1, maxBatch = d.maxBatch();
        double budgetGib = 8;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v = i + 1 < args.length ? args[i + 1] : null;
            switch (a) {
                case "serve" -> { continue; }
                case "--model" -> model = Path.of(v);
                case "--http-port" -> http = Integer.parseInt(v);
                case "--grpc-port" -> grpc = Integer.parseInt(v);
                case "--kafka" -> kafka = v;
                case "--experts" -> experts = Integer.parseInt(v);
                case "--decode" -> decode = Integer.parseInt(v);
                case "--prefill" -> prefill = Integer.parseInt(v);
                case "--max-batch" -> maxBatch = Integer.parseInt(v);
                case "--budget-gib" -> budgetGib = Double.parseDouble(v);
                default -> throw new IllegalArgumentException("unknown option " + a + "; see io.lightmesh.launcher.Main's javadoc");
            }
            i++;
        }
        EmbeddedMesh.Options o = new EmbeddedMesh.Options(model, "127.0.0.1", grpc, http, kafka, null, experts, decode, prefill,
                (long) (budgetGib * (1L << 30)), maxBatch, d.topic(), d.maxInFlight(), d.defaultMaxNewTokens());
        EmbeddedMesh mesh = EmbeddedMesh.start(o);
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.err.println("lightmesh: stopping the mesh");
            mesh.close();
            stop.countDown();
        }));
        boolean ready = mesh.awaitReady(60_000);
        System.out.println("lightmesh mesh " + (ready ? "ready" : "NOT ready (see GET /q/health/ready)"));
        System.out.println("  gRPC   " + mesh.routerTarget() + "  (lightmesh.v1.Inference)");
        System.out.println("  HTTP   http://127.0.0.1:" + mesh.httpPort() + "/q/health/ready");
        System.out.println("  Kafka  " + mesh.kafkaBootstrap());
        mesh.experts().forEach(e -> System.out.println("  expert " + e.id() + " " + e.address()));
        mesh.decoders().forEach(e -> System.out.println("  decode " + e.id() + " " + e.address()));
        stop.await();
    }
}
