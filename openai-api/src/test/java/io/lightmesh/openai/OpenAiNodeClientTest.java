package io.lightmesh.openai;

import io.lightmesh.client.testing.FakeLightMesh;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The official {@code openai} npm client (tools/openai-client-test) against the OpenAI API on a real HTTP server,
 * in front of a fake LightMesh that answers like a tool-using reasoning model ({@link OpenAiServer#modelLike}). Skipped when node or the installed
 * client is missing, unless LIGHTMESH_REQUIRE_NODE_TESTS=1 (set by .ci/run, which installs them).
 */
class OpenAiNodeClientTest {
    private static final Path SCRIPT_DIR = Path.of("..", "tools", "openai-client-test").toAbsolutePath().normalize();

    @Test
    void officialOpenAiClientPassesItsChecks() throws Exception {
        boolean required = "1".equals(System.getenv("LIGHTMESH_REQUIRE_NODE_TESTS"));
        boolean installed = Files.isDirectory(SCRIPT_DIR.resolve("node_modules/openai")) && canRun("node", "--version");
        if (required) assertTrue(installed, "node and " + SCRIPT_DIR + "/node_modules/openai are needed (npm ci there)");
        Assumptions.assumeTrue(installed, "node or the openai npm package is missing: run npm ci in tools/openai-client-test");

        try (FakeLightMesh fake = FakeLightMesh.start().respondWith(OpenAiServer::modelLike);
             TestServer server = new TestServer(fake.client(), OpenAiOptions.defaults())) {
            Process p = new ProcessBuilder("node", "test.mjs", server.base + "/v1").directory(SCRIPT_DIR.toFile())
                    .redirectErrorStream(true).start();
            boolean done = p.waitFor(120, TimeUnit.SECONDS);
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            System.out.println(out);
            if (!done) p.destroyForcibly();
            assertTrue(done, "node finished");
            assertEquals(0, p.exitValue(), out);
            assertTrue(out.contains("all 8 checks passed"), out);
        }
    }

    private static boolean canRun(String... cmd) {
        try {
            return new ProcessBuilder(cmd).redirectErrorStream(true).start().waitFor(10, TimeUnit.SECONDS);
        } catch (Exception e) {
            return false;
        }
    }
}
