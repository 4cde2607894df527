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
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The services' Quarkus applications as child processes of a test, as a deployment starts them
 * ({@code java -jar <module>/target/quarkus-app/quarkus-run.jar}, settings in {@code LIGHTMESH_*} variables), each
 * logging to a file of its own; stopped (forcibly) and their logs kept under {@code target/} by {@link #close}.
 */
final class ServiceProcesses {
    private final Path dir;
    private final Map<String, Process> processes = new LinkedHashMap<>();

    ServiceProcesses(Path dir) { this.dir = dir; }

    /** Starts {@code module}'s application as {@code name}, the reference backend unless {@code env} says otherwise. */
    void quarkusApp(String name, String module, Map<String, String> env) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx256m",
                "-XX:TieredStopAtLevel=1", "--add-modules", "jdk.incubator.vector", "-jar", QuarkusServicesTest.app(module).toString()));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve(name + ".log").toFile());
        pb.environment().put("LIGHTMESH_BACKEND", "reference");
        pb.environment().put("QUARKUS_OTEL_SDK_DISABLED", "true");
        pb.environment().putAll(env);
        processes.put(name, pb.start());
    }

    /** Waits (at most {@code ms}) for {@code name} to exit; its exit status, or null while it still runs. */
    Integer awaitExit(String name, long ms) throws InterruptedException {
        Process p = processes.get(name);
        return p.waitFor(ms, java.util.concurrent.TimeUnit.MILLISECONDS) ? p.exitValue() : null;
    }

    /** Waits (at most {@code ms}) for the router's readiness on {@code routerHttp}; fails naming the service that exited. */
    void awaitReady(int routerHttp, long ms) throws InterruptedException {
        long until = System.currentTimeMillis() + ms;
        HttpResponse<String> ready = null;
        while (System.currentTimeMillis() < until) {
            for (var p : processes.entrySet()) assertTrue(p.getValue().isAlive(), () -> p.getKey() + " exited: " + logs());
            ready = get(routerHttp, "/q/health/ready");
            if (ready != null && ready.statusCode() == 200) return;
            Thread.sleep(300);
        }
        HttpResponse<String> last = ready;
        throw new AssertionError("router not ready within " + ms + " ms: " + (last == null ? "no answer" : last.body()) + "\n" + logs());
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

    /** Kills every service (and any child) and copies the logs to target/{@code keepAs}. */
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
