package io.lightmesh.launcher;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * A single-node KRaft Kafka broker (broker and controller in one) run as a child process from kafka_2.13's
 * classes on this JVM's classpath: format the storage, start kafka.Kafka, wait for the port. Stopped by its pid.
 */
public final class KraftBroker implements AutoCloseable {
    private final Process process;
    private final String bootstrap;

    private KraftBroker(Process process, String bootstrap) {
        this.process = process;
        this.bootstrap = bootstrap;
    }

    /** Starts a broker on 127.0.0.1:port (0: a free port) with its logs and data under {@code dir}. */
    public static KraftBroker start(Path dir, int port) throws IOException, InterruptedException {
        return start(dir, port == 0 ? freePort() : port, freePort());
    }

    /**
     * As above with the controller's port given too: a broker restarted with the same folder and both ports finds
     * its metadata and voter set again (the chaos harness's broker restart).
     */
    public static KraftBroker start(Path dir, int port, int controllerPort) throws IOException, InterruptedException {
        return start(dir, port, controllerPort, 60_000);
    }

    /** As above, waiting up to {@code waitMs} for the port (a restart on a loaded machine can take longer). */
    public static KraftBroker start(Path dir, int port, int controllerPort, long waitMs) throws IOException, InterruptedException {
        Files.createDirectories(dir);
        Path data = dir.resolve("data");
        Path props = dir.resolve("server.properties");
        Files.writeString(props, String.join("\n",
                "process.roles=broker,controller",
                "node.id=1",
                "controller.quorum.bootstrap.servers=127.0.0.1:" + controllerPort,
                "listeners=PLAINTEXT://127.0.0.1:" + port + ",CONTROLLER://127.0.0.1:" + controllerPort,
                "advertised.listeners=PLAINTEXT://127.0.0.1:" + port,
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "log.dirs=" + data,
                "num.partitions=4",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "") );
        if (!Files.exists(data.resolve("meta.properties"))) {
            Process fmt = java(dir, "kafka.tools.StorageTool", "format", "-t", UUID.randomUUID().toString().replace("-", "").substring(0, 22),
                    "-c", props.toString(), "--standalone").start();
            if (!fmt.waitFor(60, TimeUnit.SECONDS) || fmt.exitValue() != 0) {
                throw new IOException("kafka storage format failed; see " + dir.resolve("format.log"));
            }
        }
        Process p = java(dir, "kafka.Kafka", props.toString()).start();
        KraftBroker b = new KraftBroker(p, "127.0.0.1:" + port);
        long until = System.currentTimeMillis() + waitMs;
        while (System.currentTimeMillis() < until) {
            if (!p.isAlive()) throw new IOException("kafka broker exited with " + p.exitValue() + "; see " + dir.resolve("broker.log"));
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 200);
                return b;
            } catch (IOException e) {
                Thread.sleep(200);
            }
        }
        b.close();
        throw new IOException("kafka broker did not open port " + port + " within " + waitMs / 1000 + " s; see " + dir.resolve("broker.log"));
    }

    private static ProcessBuilder java(Path dir, String main, String... args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xmx512m");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(main);
        cmd.addAll(List.of(args));
        String log = main.endsWith("StorageTool") ? "format.log" : "broker.log";
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve(log).toFile());
    }

    private static final java.util.Set<Integer> HANDED_OUT = java.util.concurrent.ConcurrentHashMap.newKeySet();

    /**
     * A port nothing listens on now, never one this JVM handed out before: the services a caller starts bind their
     * ports seconds later, so without the memory two of them could be given the same still-unbound port.
     */
    static int freePort() throws IOException {
        for (int i = 0; i < 100; i++) {
            try (ServerSocket s = new ServerSocket(0)) {
                if (HANDED_OUT.add(s.getLocalPort())) return s.getLocalPort();
            }
        }
        throw new IOException("no free port not handed out before in 100 tries");
    }

    public String bootstrapServers() { return bootstrap; }

    public long pid() { return process.pid(); }

    @Override
    public void close() {
        process.destroy();
        try {
            if (!process.waitFor(15, TimeUnit.SECONDS)) process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }
}
