package io.lightmesh.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Every service's build leaves a CycloneDX SBOM (target/bom.json) naming what it ships. */
class ServiceSbomTest {
    @ParameterizedTest
    @ValueSource(strings = {"router", "prefill-service", "decode-service", "expert-service"})
    void eachServiceHasACycloneDxSbomOfItsRuntimeDependencies(String module) throws Exception {
        Path bom = ServiceProcesses.repo().resolve(module).resolve("target/bom.json");
        assertTrue(Files.isRegularFile(bom), bom + " is made by mvn package (cyclonedx-maven-plugin)");
        JsonNode b = new ObjectMapper().readTree(bom.toFile());
        assertEquals("CycloneDX", b.path("bomFormat").asText());
        assertEquals("lightmesh-" + module, b.path("metadata").path("component").path("name").asText());
        Set<String> names = new HashSet<>();
        for (JsonNode c : b.path("components")) names.add(c.path("group").asText() + ":" + c.path("name").asText());
        for (String expected : Set.of("io.lightmesh:lightmesh-engine", "io.grpc:grpc-core", "io.quarkus:quarkus-core")) {
            assertTrue(names.contains(expected), module + "'s SBOM lists " + expected);
        }
        assertTrue(names.stream().noneMatch(n -> n.startsWith("org.junit")), module + "'s SBOM holds no test dependencies");
    }
}
