package io.lightmesh.helm;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.Service;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The rendered pods of the chart as local processes, each as its container would run it: the image's entrypoint
 * ({@link Images#ENTRYPOINT}, with {@code /app} the module's {@code target/quarkus-app}), the container's env as
 * Kubernetes resolves it (downward API fields, Secret references, {@code $(VAR)} expansion), the model volume at its
 * hostPath. What a cluster adds is emulated: each pod gets its own loopback address (127.a.b.n, its "pod IP", which
 * it binds: LIGHTMESH_HOST), and the cluster DNS is a hosts file the JVMs resolve names from
 * ({@code -Djdk.net.hosts.file}, never cached), kept by an endpoints loop: a headless Service's name answers with the
 * addresses of its ready pods (readiness probe passing), or of its running ones when it publishes not-ready addresses,
 * as Kubernetes' EndpointSlices do.
 */
final class LocalPods implements AutoCloseable {
    /** The module whose Quarkus application each image packages. */
    static final Map<String, String> MODULE_OF_IMAGE = Map.of("router", "router", "prefill", "prefill-service",
            "decode", "decode-service", "expert", "expert-service");

    record Pod(String name, String role, String ip, int httpPort, Process process, Path log) {}

    private final Path dir, hosts;
    private final List<HasMetadata> objects;
    private final String subnet = "127." + ThreadLocalRandom.current().nextInt(1, 250) + "." + ThreadLocalRandom.current().nextInt(1, 250) + ".";
    private int nextIp = 2;
    final Map<String, Pod> pods = new LinkedHashMap<>();
    private final Map<String, Boolean> ready = new ConcurrentHashMap<>();
    private final Thread endpoints;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(1)).build();
    private volatile boolean closed;

    LocalPods(List<HasMetadata> objects, Path dir) throws IOException {
        this.objects = objects;
        this.dir = dir;
        this.hosts = dir.resolve("cluster-dns.hosts");
        Files.writeString(hosts, "127.0.0.1 localhost\n");
        endpoints = new Thread(this::endpointsLoop, "endpoints");
        endpoints.setDaemon(true);
        endpoints.start();
    }

    /** Starts pod {@code name} of the workload of {@code role} (its pod index {@code index}, for StatefulSets). */
    synchronized Pod start(String role, String name, int index) throws IOException {
        TypedChecks.Workload w = TypedChecks.workloads(objects).stream().filter(x -> TypedChecks.role(x).equals(role)).findFirst().orElseThrow();
        Container c = w.template().getSpec().getContainers().getFirst();
        String ip = subnet + nextIp++;
        String image = c.getImage().substring(c.getImage().lastIndexOf('/') + 1, c.getImage().lastIndexOf(':'));
        String module = MODULE_OF_IMAGE.get(image.substring(image.lastIndexOf('-') + 1));
        Path app = Chart.repo().resolve(module).resolve("target/quarkus-app");
        if (!Files.isRegularFile(app.resolve("quarkus-run.jar"))) throw new IllegalStateException(app + " is not built (mvn package builds it)");

        Map<String, String> env = new LinkedHashMap<>();
        for (EnvVar e : c.getEnv()) env.put(e.getName(), value(e, env, name, ip, index));
        // the model volume: the pod's mountPath is the node's hostPath here
        var model = w.template().getSpec().getVolumes().stream().filter(v -> v.getName().equals("model")).findFirst().orElseThrow();
        String mountPath = c.getVolumeMounts().stream().filter(m -> m.getName().equals("model")).findFirst().orElseThrow().getMountPath();
        env.put("LIGHTMESH_MODEL", env.get("LIGHTMESH_MODEL").replace(mountPath, model.getHostPath().getPath()));
        // the pod network: its own address; the cluster DNS: the hosts file
        env.put("LIGHTMESH_HOST", ip);
        env.put("JAVA_TOOL_OPTIONS", env.getOrDefault("JAVA_TOOL_OPTIONS", "") + " -Djdk.net.hosts.file=" + hosts
                + " -Dsun.net.inetaddr.ttl=0 -Dsun.net.inetaddr.negative.ttl=0");

        List<String> cmd = new ArrayList<>();
        for (String a : Images.ENTRYPOINT) {
            cmd.add(a.equals("java") ? Path.of(System.getProperty("java.home"), "bin", "java").toString() : a.replace("/app/", app + "/"));
        }
        Path log = dir.resolve(name + ".log");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().keySet().removeIf(k -> k.startsWith("LIGHTMESH_") || k.startsWith("OTEL_") || k.startsWith("QUARKUS_"));
        pb.environment().putAll(env);
        Pod p = new Pod(name, role, ip, Integer.parseInt(env.get("LIGHTMESH_HTTP_PORT")), pb.start(), log);
        pods.put(name, p);
        return p;
    }

    private static final Pattern REF = Pattern.compile("\\$\\(([A-Za-z_][A-Za-z0-9_]*)\\)");

    /** A variable's value as the kubelet computes it. */
    private String value(EnvVar e, Map<String, String> earlier, String podName, String ip, int index) {
        if (e.getValueFrom() == null) {
            Matcher m = REF.matcher(e.getValue() == null ? "" : e.getValue());
            StringBuilder sb = new StringBuilder();
            while (m.find()) m.appendReplacement(sb, Matcher.quoteReplacement(earlier.getOrDefault(m.group(1), m.group())));
            return m.appendTail(sb).toString();
        }
        var f = e.getValueFrom().getFieldRef();
        if (f != null) {
            return switch (f.getFieldPath()) {
                case "metadata.name" -> podName;
                case "status.podIP" -> ip;
                case "metadata.labels['apps.kubernetes.io/pod-index']" -> String.valueOf(index);
                default -> throw new IllegalStateException("field " + f.getFieldPath() + " not emulated");
            };
        }
        var s = e.getValueFrom().getSecretKeyRef();
        if (s != null) {
            Secret secret = Chart.all(objects, Secret.class).stream().filter(x -> x.getMetadata().getName().equals(s.getName())).findFirst()
                    .orElseThrow(() -> new IllegalStateException("Secret " + s.getName() + " is not rendered"));
            return new String(Base64.getDecoder().decode(secret.getData().get(s.getKey())), StandardCharsets.UTF_8);
        }
        throw new IllegalStateException(e.getName() + ": valueFrom not emulated");
    }

    boolean ready(Pod p) {
        try {
            return p.process().isAlive() && get(p, "/q/health/ready").statusCode() == 200;
        } catch (IOException | InterruptedException e) {
            return false;
        }
    }

    HttpResponse<String> get(Pod p, String path) throws IOException, InterruptedException {
        return http.send(HttpRequest.newBuilder(URI.create("http://" + p.ip() + ":" + p.httpPort() + path)).timeout(Duration.ofSeconds(5)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    /** The endpoints controller and the cluster DNS: every 200 ms, each headless Service's name to its ready pods. */
    private void endpointsLoop() {
        String last = "";
        while (!closed) {
            StringBuilder sb = new StringBuilder("127.0.0.1 localhost\n");
            for (Pod p : List.copyOf(pods.values())) {
                boolean r = ready(p);
                ready.put(p.name(), r);
                if (!p.process().isAlive()) continue;
                // publishNotReadyAddresses: listed while running; otherwise once ready
                for (String svc : headlessServicesOf(p.role(), true)) sb.append(p.ip()).append(' ').append(svc).append('\n');
                if (!r) continue;
                for (String svc : headlessServicesOf(p.role(), false)) sb.append(p.ip()).append(' ').append(svc).append('\n');
            }
            String now = sb.toString();
            if (!now.equals(last)) {
                try {
                    Path tmp = Files.writeString(dir.resolve("cluster-dns.tmp"), now);
                    Files.move(tmp, hosts, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
                    last = now;
                } catch (IOException e) {
                    // next round
                }
            }
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    /** The DNS names of the headless Services selecting a role's pods, of those listing not-ready pods or the others. */
    List<String> headlessServicesOf(String role, boolean publishNotReady) {
        TypedChecks.Workload w = TypedChecks.workloads(objects).stream().filter(x -> TypedChecks.role(x).equals(role)).findFirst().orElseThrow();
        return Chart.all(objects, Service.class).stream().filter(s -> "None".equals(s.getSpec().getClusterIP()))
                .filter(s -> Boolean.TRUE.equals(s.getSpec().getPublishNotReadyAddresses()) == publishNotReady)
                .filter(s -> w.template().getMetadata().getLabels().entrySet().containsAll(s.getSpec().getSelector().entrySet()))
                .map(s -> s.getMetadata().getName() + "." + Chart.NAMESPACE + ".svc.cluster.local").toList();
    }

    /** SIGTERM, as Kubernetes stops a pod; waits for the exit. */
    void stop(Pod p) throws InterruptedException {
        p.process().destroy();
        if (!p.process().waitFor(60, TimeUnit.SECONDS)) p.process().destroyForcibly();
    }

    String logs() {
        StringBuilder sb = new StringBuilder();
        for (Pod p : pods.values()) {
            try {
                List<String> lines = Files.readAllLines(p.log());
                sb.append("\n--- ").append(p.name()).append(p.process().isAlive() ? "" : " (exited " + p.process().exitValue() + ")").append('\n')
                        .append(String.join("\n", lines.subList(Math.max(0, lines.size() - 25), lines.size())));
            } catch (IOException e) {
                sb.append("\n--- ").append(p.name()).append(": ").append(e);
            }
        }
        return sb.toString();
    }

    @Override
    public void close() throws IOException {
        closed = true;
        endpoints.interrupt();
        for (Pod p : pods.values()) if (p.process().isAlive()) p.process().destroyForcibly();
        for (Pod p : pods.values()) {
            try { p.process().waitFor(10, TimeUnit.SECONDS); } catch (InterruptedException ignored) { Thread.currentThread().interrupt(); }
        }
        Path keep = Files.createDirectories(Path.of("target", "local-pods-logs"));
        for (Pod p : pods.values()) if (Files.exists(p.log())) Files.copy(p.log(), keep.resolve(p.name() + ".log"), StandardCopyOption.REPLACE_EXISTING);
    }
}
