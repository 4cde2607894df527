package io.lightmesh.launcher;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The single-service commands ({@code router}, {@code prefill}, {@code decode}, {@code expert}) run the service's
 * Quarkus application, {@code <module>/target/quarkus-app/quarkus-run.jar}, as a child process: one implementation
 * of each service whether it is started through {@code ./lightmesh router ...} or {@code java -jar}. Flags given on
 * the command line become {@code -Dlightmesh.<flag>=<value>}; {@code LIGHTMESH_*} variables reach the child through
 * the environment it inherits; both are the application's {@code lightmesh.*} keys. SIGTERM / Ctrl-C to the
 * launcher is passed on and waited for, so the service shuts down cleanly.
 */
final class QuarkusApps {
    /** The module of each service command. */
    static final Map<String, String> MODULES = Map.of("router", "router", "prefill", "prefill-service",
            "decode", "decode-service", "expert", "expert-service");

    private QuarkusApps() {}

    /**
     * The application jar of {@code module}: under {@code -Dlightmesh.home} / {@code LIGHTMESH_HOME} when set, else in
     * the nearest folder above this launcher's own classes or jar (the source tree it was built in) that holds it.
     */
    static Path jar(String module) {
        Path rel = Path.of(module, "target", "quarkus-app", "quarkus-run.jar");
        List<Path> tried = new ArrayList<>();
        String home = System.getProperty("lightmesh.home", System.getenv("LIGHTMESH_HOME"));
        if (home != null && !home.isBlank()) tried.add(Path.of(home).resolve(rel));
        try {
            Path here = Path.of(QuarkusApps.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toAbsolutePath();
            for (Path p = here.getParent(); p != null; p = p.getParent()) tried.add(p.resolve(rel));
        } catch (Exception e) {
            // no code source: only lightmesh.home and the working directory
        }
        tried.add(Path.of("").toAbsolutePath().resolve(rel));
        for (Path p : tried) if (Files.isRegularFile(p)) return p;
        throw new IllegalStateException("the Quarkus application of " + module + " is not built (looked for " + tried.getFirst()
                + " and above this launcher); build it with: mvn -pl " + module + " -am package -DskipTests");
    }

    /** The child's command line: this JVM's java, the mesh's JVM flags, LIGHTMESH_JAVA_OPTS, the flags as properties. */
    static List<String> command(Path jar, Map<String, String> flags) {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"));
        String opts = System.getenv("LIGHTMESH_JAVA_OPTS");
        if (opts != null && !opts.isBlank()) cmd.addAll(Arrays.asList(opts.trim().split("\\s+")));
        flags.forEach((name, value) -> cmd.add("-Dlightmesh." + name + "=" + value));
        cmd.add("-jar");
        cmd.add(jar.toString());
        return cmd;
    }

    /** Runs the service until it exits or this JVM is stopped; its exit status. */
    static int run(String service, Map<String, String> flags) throws Exception {
        Path jar = jar(MODULES.get(service));
        Process p = new ProcessBuilder(command(jar, flags)).inheritIO().start();
        Thread stop = new Thread(() -> {
            p.destroy(); // SIGTERM: Quarkus shuts the service down cleanly
            try {
                if (!p.waitFor(60, TimeUnit.SECONDS)) p.destroyForcibly();
            } catch (InterruptedException e) {
                p.destroyForcibly();
            }
        });
        Runtime.getRuntime().addShutdownHook(stop);
        int rc = p.waitFor();
        try { Runtime.getRuntime().removeShutdownHook(stop); } catch (IllegalStateException shuttingDown) { /* hook runs */ }
        return rc;
    }
}
