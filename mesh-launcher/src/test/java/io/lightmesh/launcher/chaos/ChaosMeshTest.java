package io.lightmesh.launcher.chaos;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The chaos harness's short run (CI): the mesh as separate processes (a KRaft broker, a router, a prefill worker, two
 * decode workers and two expert shards, each the service's Quarkus application), a mixed greedy load through the
 * OpenAI API (completions and chats, streamed and not, each checked token for token against the in-process engine),
 * and the faults: SIGKILL of a decode worker, SIGKILL of an expert shard, a decode worker frozen with SIGSTOP
 * longer than the mesh's liveness bound (so its requests must be resumed elsewhere, not waited for), and a broker
 * killed and restarted. Each phase: no request wrong, none hung, none failed.
 */
class ChaosMeshTest {
    @TempDir static Path dir;

    static Path repo() {
        Path p = Path.of("").toAbsolutePath();
        return Files.isDirectory(p.resolve("router")) ? p : p.getParent(); // surefire runs in mesh-launcher/
    }

    @Test
    void killsFreezeAndABrokerRestartLoseNothingAndChangeNoToken() throws Exception {
        ChaosRun.Options o = new ChaosRun.Options(repo().resolve("models/demo"), dir.resolve("chaos"), repo(), 1, 1, 2, 2,
                "kill-decode:1@4,kill-expert:1@4,freeze-decode:0@20,restart-broker@3", 5_000, 48, 4, 8, 120_000, "reference",
                List.of("-Xmx200m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"), 4);
        PrintWriter log = new PrintWriter(System.out, true);
        ChaosRun.Report r;
        try {
            r = ChaosRun.run(o, log);
            log.println(r.table());
        } finally {
            // each process's log, kept for a look after the run (the temporary folder goes away)
            Path keep = Files.createDirectories(Path.of("target", "chaos-logs"));
            if (Files.isDirectory(o.dir())) {
                try (var files = Files.walk(o.dir(), 2)) {
                    for (Path f : files.filter(f -> f.toString().matches(".*\\.(log|tsv|md)$")).toList()) {
                        Files.copy(f, keep.resolve(f.getFileName()), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                    }
                }
            }
        }
        assertEquals(4, r.phases().size());
        for (ChaosRun.PhaseReport p : r.phases()) {
            assertTrue(p.requests() > 0, p.fault().name() + ": requests were sent during the fault");
            assertEquals(0, p.wrong(), () -> p.fault().name() + ": wrong answers\n" + r.table());
            assertEquals(0, p.hung(), () -> p.fault().name() + ": hung requests\n" + r.table());
            assertEquals(0, p.failed(), () -> p.fault().name() + ": failed requests\n" + r.table());
            assertEquals(p.requests(), p.right());
        }
        assertTrue(r.ok(), r.table());
    }
}
