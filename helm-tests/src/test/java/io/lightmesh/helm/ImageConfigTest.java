package io.lightmesh.helm;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.zip.GZIPInputStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The service images that {@code mvn -Pimages package} wrote (Jib, <module>/target/jib-image.tar; scripts/test builds
 * them on a base made offline by scripts/image-base): each image's config (entrypoint, non-root user, ports, the
 * environment for the model volume, libjsig and NVIDIA's OpenCL driver) and its files (the Quarkus fast-jar at /app,
 * the NVIDIA ICD file, none of Jib's own dependency layers). Skipped, saying so, when the images were not built.
 */
class ImageConfigTest {
    static final ObjectMapper JSON = new ObjectMapper();

    /** A tar archive's regular files: name to bytes (small files only: larger ones to an empty array). */
    static Map<String, byte[]> untar(InputStream in, long keepUpTo) throws IOException {
        Map<String, byte[]> files = new HashMap<>();
        byte[] h = new byte[512];
        while (in.readNBytes(h, 0, 512) == 512) {
            if (h[0] == 0) break;
            String name = field(h, 0, 100);
            String prefix = field(h, 345, 155);
            if (!prefix.isEmpty()) name = prefix + "/" + name;
            long size = Long.parseLong(field(h, 124, 12).trim().isEmpty() ? "0" : field(h, 124, 12).trim(), 8);
            byte type = h[156];
            byte[] body = size <= keepUpTo ? in.readNBytes((int) size) : skip(in, size);
            in.skipNBytes((512 - size % 512) % 512);
            if (type == '0' || type == 0) files.put(name.startsWith("./") ? name.substring(2) : name, body);
        }
        return files;
    }

    private static byte[] skip(InputStream in, long n) throws IOException {
        in.skipNBytes(n);
        return new byte[0];
    }

    private static String field(byte[] h, int off, int len) {
        int end = off;
        while (end < off + len && h[end] != 0) end++;
        return new String(h, off, end - off, StandardCharsets.US_ASCII);
    }

    /** The image's config and its layers' file names (Docker-save or OCI layout tarball). */
    record Image(JsonNode config, Set<String> files, Map<String, byte[]> small) {}

    static Image read(Path tar) throws IOException {
        Map<String, byte[]> top;
        try (InputStream in = Files.newInputStream(tar)) { top = untar(in, Long.MAX_VALUE); }
        JsonNode config;
        List<String> layers = new ArrayList<>();
        if (top.containsKey("manifest.json")) {
            JsonNode m = JSON.readTree(top.get("manifest.json")).get(0);
            config = JSON.readTree(top.get(m.get("Config").asText()));
            m.get("Layers").forEach(l -> layers.add(l.asText()));
        } else {
            JsonNode index = JSON.readTree(top.get("index.json"));
            JsonNode manifest = JSON.readTree(top.get(blob(index.get("manifests").get(0).get("digest").asText())));
            config = JSON.readTree(top.get(blob(manifest.get("config").get("digest").asText())));
            manifest.get("layers").forEach(l -> layers.add(blob(l.get("digest").asText())));
        }
        Set<String> files = new TreeSet<>();
        Map<String, byte[]> small = new HashMap<>();
        for (String l : layers) {
            byte[] data = top.get(l);
            InputStream in = new ByteArrayInputStream(data);
            if (data.length > 2 && (data[0] & 0xff) == 0x1f && (data[1] & 0xff) == 0x8b) in = new GZIPInputStream(in);
            Map<String, byte[]> f = untar(in, 4096);
            files.addAll(f.keySet());
            small.putAll(f);
        }
        return new Image(config.get("config"), files, small);
    }

    private static String blob(String digest) { return "blobs/" + digest.replace(':', '/'); }

    @ParameterizedTest
    @CsvSource({"router, router, '9000/tcp,8080/tcp'", "prefill-service, prefill, 8082/tcp",
            "decode-service, decode, '9100/tcp,8081/tcp'", "expert-service, expert, '9200/tcp,8083/tcp'"})
    void eachServiceImageIsConfiguredToRunOnACluster(String module, String role, String ports) throws Exception {
        Path tar = Chart.repo().resolve(module).resolve("target/jib-image.tar");
        Assumptions.assumeTrue(Files.isRegularFile(tar), tar + " not built (mvn -Pimages package; scripts/test builds it)");
        Image image = read(tar);
        JsonNode c = image.config();
        List<String> entrypoint = new ArrayList<>();
        c.get("Entrypoint").forEach(a -> entrypoint.add(a.asText()));
        assertEquals(Images.ENTRYPOINT, entrypoint, "the entrypoint LocalPods runs the rendered pods with");
        assertEquals("1000:1000", c.get("User").asText(), "non-root");
        Set<String> exposed = new TreeSet<>();
        c.get("ExposedPorts").fieldNames().forEachRemaining(exposed::add);
        assertEquals(new TreeSet<>(List.of(ports.split(","))), exposed);
        Map<String, String> env = new HashMap<>();
        c.get("Env").forEach(e -> env.put(e.asText().substring(0, e.asText().indexOf('=')), e.asText().substring(e.asText().indexOf('=') + 1)));
        assertEquals("/models/model", env.get("LIGHTMESH_MODEL"));
        assertEquals("compute,utility", env.get("NVIDIA_DRIVER_CAPABILITIES"));
        assertEquals("/etc/OpenCL/vendors", env.get("OCL_ICD_VENDORS"));
        String jsig = env.get("LD_PRELOAD");
        assertNotNull(jsig);
        assertTrue(jsig.endsWith("/lib/libjsig.so"), jsig);
        assertTrue(image.files().contains(jsig.substring(1)), "libjsig at " + jsig + " in the image");
        assertTrue(env.get("PATH").contains(jsig.substring(0, jsig.length() - "/lib/libjsig.so".length()) + "/bin"), "java on the PATH: " + env.get("PATH"));
        assertTrue(c.get("Volumes").has("/models"), "the model from a mounted volume");
        assertTrue(image.files().contains("app/quarkus-run.jar") && image.files().contains("app/quarkus/quarkus-application.dat"), "the fast-jar at /app");
        assertTrue(image.files().stream().anyMatch(f -> f.startsWith("app/lib/main/")), "its libraries");
        assertEquals("libnvidia-opencl.so.1", new String(image.small().get("etc/OpenCL/vendors/nvidia.icd"), StandardCharsets.UTF_8).trim());
        assertFalse(image.files().stream().anyMatch(f -> f.startsWith("opt/jib-unused")), "Jib's own copy of the dependencies is filtered out");
        assertEquals("lightmesh-" + role, c.get("Labels").get("org.opencontainers.image.title").asText());
    }
}
