package io.lightmesh.launcher.chaos;

import io.lightmesh.launcher.KraftBroker;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The mesh as separate processes, for fault injection: a KRaft broker (its own JVM, {@link KraftBroker}) and each
 * service's Quarkus application ({@code <module>/target/quarkus-app/quarkus-run.jar}) started as a deployment starts
 * it, configured by {@code -Dlightmesh.*}. Every process keeps its ports across a restart, so a restarted worker is
 * found again at the address the others know. Expert shards each hold every expert (shard {@code 0/1}), so any one of
 * them can die. Processes are killed with SIGKILL, frozen with SIGSTOP and resumed with SIGCONT, all from outside:
 * nothing in the services knows it is being tested.
 *
 * <p>Shape: {@code routers}, {@code prefills}, {@code decodes}, {@code experts} processes of each kind; names
 * {@code router-0}, {@code prefill-0}, {@code decode-0}, {@code expert-0}, ... and {@code broker}.
 */
public final class ChaosMesh implements AutoCloseable {
    /**
     * How many of each kind, the checkpoint, where logs go, the engine backend of every service (as the in-process
     * check's, so greedy outputs are comparable bit for bit), and extra JVM flags for every service.
     */
    public record Shape(Path model, Path dir, Path repo, int routers, int prefills, int decodes, int experts, String backend, List<String> jvmFlags) {}

    /** One service process: its kind, its ports, its command line, the running process (null while down). */
    static final class Member {
        final String name, kind;
        final int grpcPort, httpPort;
        final List<String> command;
        volatile Process process;

        Member(String name, String kind, int grpcPort, int httpPort, List<String> command) {
            this.name = name;
            this.kind = kind;
            this.grpcPort = grpcPort;
            this.httpPort = httpPort;
            this.command = command;
        }
    }

    private final Shape shape;
    private final Map<String, Member> members = new LinkedHashMap<>();
    private final int kafkaPort, controllerPort;
    private volatile KraftBroker broker;
    /** Ctrl-C or SIGTERM to the harness takes the mesh down with it. */
    private final Thread hook = new Thread(this::stopAll, "chaos-mesh-stop");
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

    private ChaosMesh(Shape shape) throws IOException {
        this.shape = shape;
        this.kafkaPort = freePort();
        this.controllerPort = freePort();
    }

    /** Starts the broker and every service, and waits (up to {@code readyMs}) until each one reports ready. */
    public static ChaosMesh start(Shape shape, long readyMs) throws Exception {
        ChaosMesh m = new ChaosMesh(shape);
        Runtime.getRuntime().addShutdownHook(m.hook);
        try {
            Files.createDirectories(shape.dir());
            m.broker = KraftBroker.start(shape.dir().resolve("broker"), m.kafkaPort, m.controllerPort, 240_000);
            m.plan();
            // experts first: the workers discover the placement from them when they start
            for (Member e : m.ofKind("expert")) m.launch(e);
            m.awaitMembers(m.ofKind("expert"), readyMs);
            for (Member x : m.members.values()) if (!x.kind.equals("expert")) m.launch(x);
            m.awaitMembers(new ArrayList<>(m.members.values()), readyMs);
            return m;
        } catch (Exception e) {
            m.close();
            throw e;
        }
    }

    private void plan() throws IOException {
        String model = shape.model().toAbsolutePath().toString();
        String kafka = "127.0.0.1:" + kafkaPort;
        List<String> expertTargets = new ArrayList<>(), decodeTargets = new ArrayList<>();
        List<int[]> expertPorts = new ArrayList<>(), decodePorts = new ArrayList<>();
        for (int i = 0; i < shape.experts(); i++) { int[] p = {freePort(), freePort()}; expertPorts.add(p); expertTargets.add("127.0.0.1:" + p[0]); }
        for (int i = 0; i < shape.decodes(); i++) { int[] p = {freePort(), freePort()}; decodePorts.add(p); decodeTargets.add("127.0.0.1:" + p[0]); }
        String experts = String.join(",", expertTargets), decodes = String.join(",", decodeTargets);
        int[] routerPorts = new int[shape.routers() * 2];
        for (int i = 0; i < routerPorts.length; i++) routerPorts[i] = freePort();
        // router-0 runs the expert placement controller (a router given the shards runs one) and the workers follow
        // its placement; the other routers are given no shards, so that one controller places the experts
        String controller = "127.0.0.1:" + routerPorts[0];
        for (int i = 0; i < shape.experts(); i++) {
            int[] p = expertPorts.get(i);
            add("expert-" + i, "expert", "expert-service", p[0], p[1], Map.of("model", model, "shard", "0/1", "id", "expert-" + i,
                    "host", "127.0.0.1", "grpc-port", "" + p[0], "http-port", "" + p[1], "advertise", expertTargets.get(i)));
        }
        for (int i = 0; i < shape.decodes(); i++) {
            int[] p = decodePorts.get(i);
            add("decode-" + i, "decode", "decode-service", p[0], p[1], Map.of("model", model, "experts", experts, "id", "decode-" + i,
                    "host", "127.0.0.1", "grpc-port", "" + p[0], "http-port", "" + p[1], "advertise", decodeTargets.get(i), "budget-gib", "1",
                    "placement", controller));
        }
        for (int i = 0; i < shape.prefills(); i++) {
            int h = freePort();
            add("prefill-" + i, "prefill", "prefill-service", 0, h, Map.of("model", model, "kafka", kafka, "experts", experts,
                    "id", "prefill-" + i, "host", "127.0.0.1", "http-port", "" + h, "placement", controller));
        }
        for (int i = 0; i < shape.routers(); i++) {
            int g = routerPorts[2 * i], h = routerPorts[2 * i + 1];
            Map<String, String> flags = new java.util.HashMap<>(Map.of("model", model, "kafka", kafka, "decode", decodes,
                    "host", "127.0.0.1", "grpc-port", "" + g, "http-port", "" + h, "poll-ms", "500"));
            if (i == 0) flags.put("experts", experts);
            add("router-" + i, "router", "router", g, h, flags);
        }
    }

    private void add(String name, String kind, String module, int grpc, int httpPort, Map<String, String> flags) {
        Path jar = shape.repo().resolve(module).resolve("target/quarkus-app/quarkus-run.jar");
        if (!Files.isRegularFile(jar)) {
            throw new IllegalStateException(jar + " is not built; build the services first: mvn -B -ntp package -DskipTests");
        }
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"));
        cmd.addAll(shape.jvmFlags());
        flags.forEach((k, v) -> cmd.add("-Dlightmesh." + k + "=" + v));
        if (!kind.equals("router")) cmd.add("-Dlightmesh.backend=" + shape.backend()); // the router runs no model
        cmd.addAll(List.of("-jar", jar.toString()));
        members.put(name, new Member(name, kind, grpc, httpPort, cmd));
    }

    private void launch(Member m) throws IOException {
        ProcessBuilder pb = new ProcessBuilder(m.command).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(shape.dir().resolve(m.name + ".log").toFile()));
        m.process = pb.start();
    }

    /** The members of one kind, in name order. */
    List<Member> ofKind(String kind) { return members.values().stream().filter(m -> m.kind.equals(kind)).toList(); }

    /** Names of the members of one kind. */
    public List<String> names(String kind) { return ofKind(kind).stream().map(m -> m.name).toList(); }

    /** The routers' HTTP base URLs (the OpenAI API), in order. */
    public List<String> routerUrls() { return ofKind("router").stream().map(m -> "http://127.0.0.1:" + m.httpPort).toList(); }

    public String kafka() { return "127.0.0.1:" + kafkaPort; }

    private Member member(String name) {
        Member m = members.get(name);
        if (m == null) throw new IllegalArgumentException("no process " + name + " in the mesh; have " + members.keySet());
        return m;
    }

    public long pid(String name) {
        if (name.equals("broker")) return broker.pid();
        Process p = member(name).process;
        if (p == null) throw new IllegalStateException(name + " is not running");
        return p.pid();
    }

    /** SIGKILL: no shutdown hook runs, nothing is flushed or committed. */
    public void kill(String name) throws InterruptedException {
        if (name.equals("broker")) {
            KraftBroker b = broker;
            broker = null;
            ProcessHandle.of(b.pid()).ifPresent(ProcessHandle::destroyForcibly);
            ProcessHandle.of(b.pid()).ifPresent(h -> h.onExit().join());
            return;
        }
        Member m = member(name);
        Process p = m.process;
        m.process = null;
        if (p != null) {
            p.destroyForcibly(); // SIGKILL on Unix
            p.waitFor(30, TimeUnit.SECONDS);
        }
    }

    /** Starts a killed process again, on the same ports and with the same data (the broker keeps its log dirs). */
    public void restart(String name) throws Exception {
        if (name.equals("broker")) {
            broker = KraftBroker.start(shape.dir().resolve("broker"), kafkaPort, controllerPort, 240_000);
            return;
        }
        Member m = member(name);
        if (m.process != null && m.process.isAlive()) throw new IllegalStateException(name + " is still running");
        launch(m);
    }

    /** SIGSTOP: the process stops on the spot, its sockets stay open (as behind a network partition). */
    public void freeze(String name) throws IOException, InterruptedException { signal(name, "STOP"); }

    /** SIGCONT: a frozen process carries on from where it stopped. */
    public void thaw(String name) throws IOException, InterruptedException { signal(name, "CONT"); }

    private void signal(String name, String sig) throws IOException, InterruptedException {
        Process k = new ProcessBuilder("kill", "-" + sig, Long.toString(pid(name))).redirectErrorStream(true).start();
        if (!k.waitFor(10, TimeUnit.SECONDS) || k.exitValue() != 0) {
            throw new IOException("kill -" + sig + " " + name + " failed: " + new String(k.getInputStream().readAllBytes()));
        }
    }

    /** Waits until each of {@code names} answers 200 on /q/health/ready (the broker: its port accepts). */
    public void awaitReady(List<String> names, long ms) throws Exception {
        awaitMembers(names.stream().map(this::member).toList(), ms);
    }

    private void awaitMembers(List<Member> list, long ms) throws Exception {
        long until = System.currentTimeMillis() + ms;
        for (Member m : list) {
            while (true) {
                Process p = m.process;
                if (p == null || !p.isAlive()) {
                    throw new IllegalStateException(m.name + " is not running" + (p == null ? "" : " (exit " + p.exitValue() + ")") + "; last lines:\n" + tail(m.name, 30));
                }
                if (ready(m)) break;
                if (System.currentTimeMillis() > until) {
                    throw new IllegalStateException(m.name + " not ready within " + ms + " ms: " + readyBody(m) + "\n" + tail(m.name, 30));
                }
                Thread.sleep(250);
            }
        }
    }

    /** Every process is running and ready. */
    public void awaitAllReady(long ms) throws Exception { awaitMembers(new ArrayList<>(members.values()), ms); }

    private boolean ready(Member m) {
        String b = readyBody(m);
        return b != null && b.startsWith("200 ");
    }

    private String readyBody(Member m) {
        try {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + m.httpPort + "/q/health/ready"))
                    .timeout(Duration.ofSeconds(2)).build(), HttpResponse.BodyHandlers.ofString());
            return r.statusCode() + " " + r.body();
        } catch (IOException e) {
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
    }

    /** The last {@code n} lines of a process's log. */
    public String tail(String name, int n) {
        try {
            List<String> lines = Files.readAllLines(shape.dir().resolve(name + ".log"));
            return String.join("\n", lines.subList(Math.max(0, lines.size() - n), lines.size()));
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    /** Resident memory of each running process, MiB (from /proc), for the report. */
    public Map<String, Long> rssMiB() {
        Map<String, Long> out = new LinkedHashMap<>();
        for (Member m : members.values()) {
            Process p = m.process;
            if (p != null && p.isAlive()) out.put(m.name, rss(p.pid()));
        }
        KraftBroker b = broker;
        if (b != null) out.put("broker", rss(b.pid()));
        return out;
    }

    private static long rss(long pid) {
        try {
            for (String l : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
                if (l.startsWith("VmRSS:")) return Long.parseLong(l.replaceAll("[^0-9]", "")) / 1024;
            }
        } catch (IOException | NumberFormatException e) {
            // gone, or not Linux
        }
        return -1;
    }

    private static final java.util.Set<Integer> TAKEN = java.util.concurrent.ConcurrentHashMap.newKeySet();

    /**
     * A free port below the kernel's ephemeral range (32768 and up on Linux): a port the kernel hands out for
     * outgoing connections could be taken by one before a restarted process binds it again.
     */
    static int freePort() throws IOException {
        java.util.Random r = new java.util.Random();
        for (int i = 0; i < 1000; i++) {
            int port = 20_000 + r.nextInt(12_000);
            if (TAKEN.contains(port)) continue;
            try (ServerSocket s = new ServerSocket(port, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
                TAKEN.add(port);
                return port;
            } catch (IOException inUse) {
                // try another
            }
        }
        throw new IOException("no free port in 20000-31999");
    }

    /** SIGCONT to everything (a frozen process cannot act on SIGKILL's cleanup otherwise), then SIGKILL, broker last. */
    @Override
    public void close() {
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException shuttingDown) {
            // the hook runs
        }
        stopAll();
    }

    private void stopAll() {
        for (Member m : members.values()) {
            Process p = m.process;
            if (p == null) continue;
            try { signal(m.name, "CONT"); } catch (Exception ignored) { /* already gone */ }
            p.destroyForcibly();
        }
        for (Member m : members.values()) {
            Process p = m.process;
            if (p != null) try { p.waitFor(20, TimeUnit.SECONDS); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        }
        KraftBroker b = broker;
        if (b != null) b.close();
    }
}
