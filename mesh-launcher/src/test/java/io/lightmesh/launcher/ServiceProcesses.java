package io.lightmesh.launcher;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The services' Quarkus applications as child processes of a test, as a deployment starts them
 * ({@code java -jar <module>/target/quarkus-app/quarkus-run.jar}, settings in {@code LIGHTMESH_*} variables or
 * {@code -Dlightmesh.*} properties), each logging to a file of its own; stopped (forcibly) and their logs kept under
 * {@code target/} by {@link #close}. Every service runs the reference backend.
 */
final class ServiceProcesses {
    private final Path dir;
    private final Map<String, String> common;
    private final Map<String, Process> processes = new LinkedHashMap<>();

    /** Services without OpenTelemetry export. */
    ServiceProcesses(Path dir) { this(dir, Map.of("QUARKUS_OTEL_SDK_DISABLED", "true")); }

    /** Services with {@code common} in every one's environment (where to export spans, say). */
    ServiceProcesses(Path dir, Map<String, String> common) {
        this.dir = dir;
        this.common = new HashMap<>(common);
        this.common.putIfAbsent("LIGHTMESH_BACKEND", "reference");
    }

    /** The repository's root (surefire runs in mesh-launcher/). */
    static Path repo() {
        Path p = Path.of("").toAbsolutePath();
        return Files.isDirectory(p.resolve("router")) ? p : p.getParent();
    }

    /** {@code module}'s application, which the build makes before this module's tests. */
    static Path app(String module) {
        Path jar = repo().resolve(module).resolve("target/quarkus-app/quarkus-run.jar");
        assertTrue(Files.isRegularFile(jar), jar + " is built before this module (mvn verify from the root builds it)");
        return jar;
    }

    /** A service's JVM: this test's java, a small heap, C1 only (start-up over peak speed), the Vector API. */
    static List<String> jvm() {
        return List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx256m", "-XX:TieredStopAtLevel=1",
                "--add-modules", "jdk.incubator.vector");
    }

    /** Starts {@code module}'s application as {@code name}, with {@code env} and the JVM options {@code props}. */
    void quarkusApp(String name, String module, Map<String, String> env, String... props) throws IOException {
        List<String> cmd = new ArrayList<>(jvm());
        cmd.addAll(Arrays.asList(props));
        cmd.addAll(List.of("-jar", app(module).toString()));
        start(name, cmd, env);
    }

    /** Starts {@code cmd} as the service {@code name}, the common environment overridden by {@code env}. */
    void start(String name, List<String> cmd, Map<String, String> env) throws IOException {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve(name + ".log").toFile());
        pb.environment().putAll(common);
        pb.environment().putAll(env);
        processes.put(name, pb.start());
    }

    /** The process of the service {@code name}. */
    Process process(String name) { return processes.get(name); }

    /** Waits (at most {@code ms}) for {@code name} to exit; its exit status, or null while it still runs. */
    Integer awaitExit(String name, long ms) throws InterruptedException {
        Process p = processes.get(name);
        return p.waitFor(ms, java.util.concurrent.TimeUnit.MILLISECONDS) ? p.exitValue() : null;
    }

    /** Waits (at most {@code ms}) for the router's readiness on {@code routerHttp}; fails naming the service that exited. */
    void awaitReady(int routerHttp, long ms) throws Exception {
        awaitReady("router", () -> get(routerHttp, "/q/health/ready"), ms);
    }

    /** An answer of a readiness endpoint; null while nothing listens. */
    interface Probe {
        HttpResponse<String> answer() throws Exception;
    }

    /** Waits (at most {@code ms}) for {@code probe} to answer 200; fails naming the service that exited, or the last answer. */
    void awaitReady(String what, Probe probe, long ms) throws Exception {
        long until = System.currentTimeMillis() + ms;
        HttpResponse<String> ready = null;
        while (System.currentTimeMillis() < until) {
            for (var p : processes.entrySet()) assertTrue(p.getValue().isAlive(), () -> p.getKey() + " exited: " + logs());
            ready = probe.answer();
            if (ready != null && ready.statusCode() == 200) return;
            Thread.sleep(300);
        }
        HttpResponse<String> last = ready;
        throw new AssertionError(what + " not ready within " + ms + " ms: " + (last == null ? "no answer" : last.body()) + "\n" + logs());
    }

    /** GET on 127.0.0.1:port; null while nothing listens. */
    static HttpResponse<String> get(int port, String path) throws InterruptedException {
        try {
            return HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                    .timeout(java.time.Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
        } catch (IOException notListening) {
            return null;
        }
    }

    String log(String name) {
        try {
            return Files.readString(dir.resolve(name + ".log"));
        } catch (IOException e) {
            return e.toString();
        }
    }

    /** The last 20 lines of each service's log. */
    String logs() {
        StringBuilder sb = new StringBuilder();
        for (String name : processes.keySet()) {
            List<String> lines = log(name).lines().toList();
            sb.append("\n--- ").append(name).append('\n').append(String.join("\n", lines.subList(Math.max(0, lines.size() - 20), lines.size())));
        }
        return sb.toString();
    }

    /** Kills every service (its children first: a killed launcher cannot pass anything on) and copies the logs to target/{@code keepAs}. */
    void close(String keepAs) throws IOException {
        for (Process p : processes.values()) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
        }
        for (Process p : processes.values()) {
            try { p.waitFor(10, java.util.concurrent.TimeUnit.SECONDS); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        }
        Path keep = Files.createDirectories(Path.of("target", keepAs));
        for (String name : processes.keySet()) {
            if (Files.exists(dir.resolve(name + ".log"))) Files.copy(dir.resolve(name + ".log"), keep.resolve(name + ".log"), StandardCopyOption.REPLACE_EXISTING);
        }
    }
}
