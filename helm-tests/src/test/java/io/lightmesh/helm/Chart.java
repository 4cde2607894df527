package io.lightmesh.helm;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLParser;
import com.marcnuri.helm.Helm;
import com.marcnuri.helm.LintResult;
import com.marcnuri.helm.TemplateCommand;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.autoscaling.v2.HorizontalPodAutoscaler;
import io.fabric8.kubernetes.api.model.networking.v1.Ingress;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * helm/lightmesh through helm-java (Helm 3.21 in a jar): lint, template, and the rendered objects read into fabric8's
 * typed Kubernetes model (KEDA's ScaledObject, which fabric8 does not model, as a generic resource).
 */
final class Chart {
    static final String RELEASE = "lm", NAMESPACE = "llm";
    /** A current Kubernetes (the chart wants >= 1.28: the pod-index label; image volumes >= 1.31). */
    static final String KUBE_VERSION = "1.33.0";
    static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
    /** The typed class of each kind the chart renders. */
    static final Map<String, Class<? extends HasMetadata>> KINDS = Map.of("Deployment", Deployment.class, "StatefulSet", StatefulSet.class,
            "Service", Service.class, "PodDisruptionBudget", PodDisruptionBudget.class, "HorizontalPodAutoscaler", HorizontalPodAutoscaler.class,
            "Ingress", Ingress.class, "Secret", Secret.class, "Pod", Pod.class);

    private Chart() {}

    static Path repo() {
        return Path.of(System.getProperty("lightmesh.repo", "..")).toAbsolutePath().normalize();
    }

    static Path dir() { return repo().resolve("helm/lightmesh"); }

    /** The realistic value sets of helm/lightmesh/ci, by file name without .yaml. */
    static List<String> valueSets() {
        try (var files = Files.list(dir().resolve("ci"))) {
            return files.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".yaml")).map(n -> n.substring(0, n.length() - 5)).sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Path valueSet(String name) { return dir().resolve("ci").resolve(name + ".yaml"); }

    /** helm template with these values files (none: the defaults) and --set pairs (key, value, key, value...). */
    static String template(List<Path> valuesFiles, String... sets) {
        TemplateCommand t = new Helm(dir()).template().withName(RELEASE).withNamespace(NAMESPACE).withKubeVersion(KUBE_VERSION);
        for (Path f : valuesFiles) t = t.withValuesFile(f);
        for (int i = 0; i < sets.length; i += 2) t = t.set(sets[i], sets[i + 1]);
        return t.call();
    }

    /**
     * helm lint --strict of the chart with {@code valueSet} (null: the defaults). helm-java's lint takes no values
     * file, so the set is merged over values.yaml in a copy of the chart, as Helm merges a -f file.
     */
    static LintResult lint(String valueSet, Path scratch) throws IOException {
        if (valueSet == null) return new Helm(dir()).lint().strict().call();
        Path copy = scratch.resolve("lightmesh-" + valueSet);
        copyTree(dir(), copy);
        JsonNode merged = merge(YAML.readTree(dir().resolve("values.yaml").toFile()), YAML.readTree(valueSet(valueSet).toFile()));
        YAML.writeValue(copy.resolve("values.yaml").toFile(), merged);
        return new Helm(copy).lint().strict().call();
    }

    /**
     * The {@code helm test} Pod as rendered with these values files: helm-java's template leaves hooks out, so it is
     * rendered from a copy of the chart whose test template has its hook annotations removed.
     */
    static io.fabric8.kubernetes.api.model.Pod testHook(Path scratch, List<Path> valuesFiles, String... sets) throws IOException {
        Path copy = Files.createTempDirectory(scratch, "hook");
        copyTree(dir(), copy.resolve("lightmesh"));
        Path t = copy.resolve("lightmesh/templates/tests/test-completion.yaml");
        Files.writeString(t, Files.readString(t).replace("helm.sh/hook:", "lightmesh.test/hook:").replace("helm.sh/hook-delete-policy:", "lightmesh.test/hook-delete-policy:"));
        TemplateCommand c = new Helm(copy.resolve("lightmesh")).template().withName(RELEASE).withNamespace(NAMESPACE).withKubeVersion(KUBE_VERSION);
        for (Path f : valuesFiles) c = c.withValuesFile(f);
        for (int i = 0; i < sets.length; i += 2) c = c.set(sets[i], sets[i + 1]);
        return all(parse(c.call()), io.fabric8.kubernetes.api.model.Pod.class).getFirst();
    }

    /** b over a, as Helm merges values: maps key by key, anything else replaced. */
    static JsonNode merge(JsonNode a, JsonNode b) {
        if (!(a instanceof ObjectNode ao) || !(b instanceof ObjectNode bo)) return b;
        ObjectNode out = ao.deepCopy();
        for (Iterator<Map.Entry<String, JsonNode>> it = bo.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            out.set(e.getKey(), out.has(e.getKey()) ? merge(out.get(e.getKey()), e.getValue()) : e.getValue());
        }
        return out;
    }

    private static void copyTree(Path from, Path to) throws IOException {
        Files.walkFileTree(from, new SimpleFileVisitor<>() {
            @Override public FileVisitResult preVisitDirectory(Path d, BasicFileAttributes a) throws IOException {
                Files.createDirectories(to.resolve(from.relativize(d).toString()));
                return FileVisitResult.CONTINUE;
            }
            @Override public FileVisitResult visitFile(Path f, BasicFileAttributes a) throws IOException {
                Files.copy(f, to.resolve(from.relativize(f).toString()));
                return FileVisitResult.CONTINUE;
            }
        });
    }

    /** Every object of a rendered manifest stream, typed where fabric8 has the kind. */
    static List<HasMetadata> parse(String manifests) {
        List<HasMetadata> out = new ArrayList<>();
        try (YAMLParser p = (YAMLParser) YAML.getFactory().createParser(manifests)) {
            for (Iterator<JsonNode> docs = YAML.readValues(p, JsonNode.class); docs.hasNext(); ) {
                JsonNode doc = docs.next();
                if (doc == null || doc.isNull() || doc.isMissingNode() || doc.isEmpty()) continue;
                Class<? extends HasMetadata> type = KINDS.getOrDefault(doc.path("kind").asText(), GenericKubernetesResource.class);
                out.add(YAML.treeToValue(doc, type));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("rendered manifests do not parse: " + e.getMessage(), e);
        }
        return out;
    }

    static <T extends HasMetadata> List<T> all(List<HasMetadata> objects, Class<T> type) {
        return objects.stream().filter(type::isInstance).map(type::cast).toList();
    }
}
