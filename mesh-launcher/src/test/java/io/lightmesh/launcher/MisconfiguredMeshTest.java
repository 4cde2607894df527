package io.lightmesh.launcher;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.TestKafka;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Misconfigurations an operator hits, on the services' Quarkus applications as separate processes over real gRPC
 * and Kafka: each must fail fast naming the setting, never be served silently.
 * <ul>
 *   <li>A decode worker told to follow a placement controller (lightmesh.placement) on a router that runs none
 *       (lightmesh.placement-controller=false): it fails its start at once with the router's reason, instead of
 *       waiting its 120 s for a placement that can never come.</li>
 *   <li>A decode worker of another checkpoint (other layer count) listed in the router's lightmesh.decode: the
 *       router does not use it, logs it at WARNING and shows why in /q/health/ready.</li>
 * </ul>
 * (Several routers each running a controller over the same shards: PlacementControllerTest, the controllers'
 * logic over real gRPC.)
 */
class MisconfiguredMeshTest {
    @TempDir static Path dir;
    @RegisterExtension static final TestKafka kafka = new TestKafka(4);
    static ServiceProcesses services;
    static int routerGrpc, routerHttp, decode0, decode1;
    static long started;

    @BeforeAll
    static void start() throws Exception {
        Path model = dir.resolve("model"), other = dir.resolve("other-model");
        SyntheticCheckpoint.write(model, SyntheticCheckpoint.Shape.tiny(), DType.F32, 21, false);
        SyntheticCheckpoint.write(other, new SyntheticCheckpoint.Shape(512, 64, 4, 4, 2, 16, 8, 4, 2, 48, 16), DType.F32, 22, false);
        services = new ServiceProcesses(dir);
        int e0 = KraftBroker.freePort();
        decode0 = KraftBroker.freePort();
        decode1 = KraftBroker.freePort();
        routerGrpc = KraftBroker.freePort();
        routerHttp = KraftBroker.freePort();
        services.quarkusApp("expert-0", "expert-service", Map.of("LIGHTMESH_MODEL", model.toString(), "LIGHTMESH_SHARD", "0/1",
                "LIGHTMESH_HOST", "127.0.0.1", "LIGHTMESH_GRPC_PORT", "" + e0, "LIGHTMESH_HTTP_PORT", "" + KraftBroker.freePort()));
        // several router replicas: each is started with its controller off (lightmesh.placement-controller=false)
        services.quarkusApp("router", "router", Map.of("LIGHTMESH_MODEL", model.toString(), "LIGHTMESH_KAFKA", kafka.bootstrapServers(),
                "LIGHTMESH_DECODE", "127.0.0.1:" + decode0 + ",127.0.0.1:" + decode1, "LIGHTMESH_EXPERTS", "127.0.0.1:" + e0,
                "LIGHTMESH_PLACEMENT_CONTROLLER", "false", "LIGHTMESH_HOST", "127.0.0.1", "LIGHTMESH_GRPC_PORT", "" + routerGrpc,
                "LIGHTMESH_HTTP_PORT", "" + routerHttp, "LIGHTMESH_POLL_MS", "300"));
        started = System.currentTimeMillis();
        // ... but a decode worker was left following the controller
        services.quarkusApp("decode-0", "decode-service", Map.of("LIGHTMESH_MODEL", model.toString(), "LIGHTMESH_PLACEMENT", "127.0.0.1:" + routerGrpc,
                "LIGHTMESH_HOST", "127.0.0.1", "LIGHTMESH_GRPC_PORT", "" + decode0, "LIGHTMESH_HTTP_PORT", "" + KraftBroker.freePort(),
                "LIGHTMESH_ADVERTISE", "127.0.0.1:" + decode0, "LIGHTMESH_BUDGET_GIB", "1"));
        // and another decode worker runs another checkpoint (its experts in-process)
        services.quarkusApp("decode-1", "decode-service", Map.of("LIGHTMESH_MODEL", other.toString(),
                "LIGHTMESH_HOST", "127.0.0.1", "LIGHTMESH_GRPC_PORT", "" + decode1, "LIGHTMESH_HTTP_PORT", "" + KraftBroker.freePort(),
                "LIGHTMESH_ADVERTISE", "127.0.0.1:" + decode1, "LIGHTMESH_BUDGET_GIB", "1"));
    }

    @AfterAll
    static void stop() throws Exception {
        if (services != null) services.close("misconfigured-mesh-logs");
    }

    @Test
    void aWorkerFollowingARouterWithoutAControllerFailsItsStartNamingIt() throws Exception {
        // the worker's own wait for a placement is 120 s; the router says at once that none will come
        Integer exit = services.awaitExit("decode-0", 110_000);
        long took = System.currentTimeMillis() - started;
        assertNotNull(exit, "decode-0 still running after " + took + " ms: " + services.logs());
        assertNotEquals(0, exit, "a failed start exits non-zero");
        String log = services.log("decode-0");
        assertTrue(log.contains("which serves no placement controller") && log.contains("this router runs no expert placement controller")
                && log.contains("lightmesh.placement-controller is false"), log);
        assertTrue(log.contains("SEVERE") || log.contains("ERROR"), "said at SEVERE/ERROR: " + log);
    }

    @Test
    void aDecodeWorkerOfAnotherModelIsNotUsedAndSaidSo() throws Exception {
        long until = System.currentTimeMillis() + 150_000;
        String body = null;
        while (System.currentTimeMillis() < until) {
            HttpResponse<String> r = ServiceProcesses.get(routerHttp, "/q/health/ready");
            if (r != null) body = r.body();
            if (body != null && body.contains("router has")) break;
            Thread.sleep(500);
        }
        assertTrue(body != null && body.contains("127.0.0.1:" + decode1) && body.contains("runs model") && body.contains("router has"),
                "readiness names the worker of another model: " + body + services.logs());
        String router = services.log("router");
        assertTrue(router.contains("WARN") && router.contains("not used (lightmesh.model differs)"), router);
        // the placement check says the controller is off (so no worker may follow it)
        assertTrue(body.contains("\"placement\""), body);
        assertEquals(1, router.lines().filter(l -> l.contains("not used (lightmesh.model differs)")).count(), "said once, not every poll");
    }
}
