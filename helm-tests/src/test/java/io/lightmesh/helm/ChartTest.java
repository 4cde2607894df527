package io.lightmesh.helm;

import com.marcnuri.helm.LintResult;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.autoscaling.v2.HorizontalPodAutoscaler;
import io.fabric8.kubernetes.api.model.networking.v1.Ingress;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * helm/lightmesh without a cluster: lint --strict and template for the defaults and every value set of ci/ (CPU only,
 * GPU nodes, external Kafka, autoscaling, existing-Secret API key with TLS), each rendering read into fabric8's typed
 * model and checked ({@link TypedChecks}), then what each value set is about; and the values schema refusing the
 * usual mistakes with a message naming the key.
 */
class ChartTest {
    @TempDir Path scratch;

    static Stream<String> sets() {
        List<String> s = new ArrayList<>(Chart.valueSets());
        s.addFirst("default");
        return s.stream();
    }

    static List<HasMetadata> render(String set, String... sets) {
        return Chart.parse(Chart.template(set.equals("default") ? List.of() : List.of(Chart.valueSet(set)), sets));
    }

    @Test
    void theFiveRealisticValueSetsAreThere() {
        assertTrue(Chart.valueSets().containsAll(List.of("cpu-only", "gpu-nodes", "external-kafka", "autoscaling", "secret-tls", "ha-routers")), Chart.valueSets().toString());
    }

    @ParameterizedTest
    @MethodSource("sets")
    void lintStrictPasses(String set) throws Exception {
        LintResult r = Chart.lint(set.equals("default") ? null : set, scratch);
        assertFalse(r.isFailed(), () -> set + ": " + String.join("\n", r.getMessages()));
    }

    @ParameterizedTest
    @MethodSource("sets")
    void everyRenderedObjectPassesTheTypedChecks(String set) throws Exception {
        List<HasMetadata> objects = render(set);
        assertTrue(objects.size() >= 10, set + ": " + objects.size() + " objects");
        List<String> problems = TypedChecks.all(objects);
        assertTrue(problems.isEmpty(), () -> set + ":\n" + String.join("\n", problems));
        // the four roles, each with a PodDisruptionBudget; the helm test hook
        for (String role : List.of("router", "prefill", "decode", "experts")) {
            assertTrue(TypedChecks.workloads(objects).stream().anyMatch(w -> TypedChecks.role(w).equals(role)), set + ": no " + role);
        }
        Pod test = Chart.testHook(scratch, set.equals("default") ? List.of() : List.of(Chart.valueSet(set)));
        assertEquals("test", test.getMetadata().getAnnotations().get("lightmesh.test/hook"));
        assertTrue(TypedChecks.unknownFields(List.of(test)).isEmpty(), () -> TypedChecks.unknownFields(List.of(test)).toString());
        String router = Chart.all(objects, Service.class).stream().map(x -> x.getMetadata().getName()).filter(n -> n.endsWith("-router")).findFirst().orElseThrow();
        assertTrue(TypedChecks.env(test.getSpec().getContainers().getFirst(), "ROUTER").matches("https?://" + router + ":\\d+"), "helm test asks the router's Service");
    }

    static Container container(List<HasMetadata> objects, String role) {
        return TypedChecks.workloads(objects).stream().filter(w -> TypedChecks.role(w).equals(role)).findFirst().orElseThrow()
                .template().getSpec().getContainers().getFirst();
    }

    static EnvVar envVar(Container c, String name) {
        return c.getEnv().stream().filter(e -> e.getName().equals(name)).findFirst().orElse(null);
    }

    @Test
    void defaultsRunKafkaInsideAndWireTheMeshByDiscovery() {
        List<HasMetadata> o = render("default");
        StatefulSet kafka = Chart.all(o, StatefulSet.class).stream().filter(s -> s.getMetadata().getName().equals("lm-lightmesh-kafka")).findFirst().orElseThrow();
        assertEquals("apache/kafka:4.2.1", kafka.getSpec().getTemplate().getSpec().getContainers().getFirst().getImage());
        assertEquals(1, kafka.getSpec().getVolumeClaimTemplates().size(), "the broker's log on a PVC");
        Container router = container(o, "router");
        assertEquals("dns:lm-lightmesh-decode.llm.svc.cluster.local:9100", TypedChecks.env(router, "LIGHTMESH_DECODE"));
        assertEquals("dns:lm-lightmesh-experts.llm.svc.cluster.local:9200", TypedChecks.env(router, "LIGHTMESH_EXPERTS"));
        assertEquals("lm-lightmesh-kafka.llm.svc.cluster.local:9092", TypedChecks.env(router, "LIGHTMESH_KAFKA"));
        assertEquals("lightmesh-router:0.1.0-SNAPSHOT", router.getImage());
        // the router's placement controller follows the discovered shards; the workers follow its placement
        assertNull(envVar(router, "LIGHTMESH_PLACEMENT_CONTROLLER"), "the controller is on by default");
        assertEquals("60", TypedChecks.env(router, "LIGHTMESH_REBALANCE_INTERVAL_S"));
        for (String role : List.of("decode", "prefill")) {
            assertEquals("lm-lightmesh-placement.llm.svc.cluster.local:9000", TypedChecks.env(container(o, role), "LIGHTMESH_PLACEMENT"), role);
            assertNull(envVar(container(o, role), "LIGHTMESH_EXPERTS"), role + ": the controller's placement, not its own");
        }
        assertEquals("$(POD_INDEX)/2", TypedChecks.env(container(o, "experts"), "LIGHTMESH_SHARD"));
        // decode workers and expert shards behind headless Services: their DNS names answer with every ready pod
        for (String s : List.of("lm-lightmesh-decode", "lm-lightmesh-experts")) {
            assertEquals("None", Chart.all(o, Service.class).stream().filter(x -> x.getMetadata().getName().equals(s)).findFirst().orElseThrow().getSpec().getClusterIP());
        }
        // the controller's Service lists the router before it is ready (its readiness waits for workers that wait for a placement)
        Service placement = Chart.all(o, Service.class).stream().filter(x -> x.getMetadata().getName().equals("lm-lightmesh-placement")).findFirst().orElseThrow();
        assertTrue(placement.getSpec().getPublishNotReadyAddresses());
        Service r = Chart.all(o, Service.class).stream().filter(x -> x.getMetadata().getName().equals("lm-lightmesh-router")).findFirst().orElseThrow();
        assertEquals(List.of(9000, 8080), r.getSpec().getPorts().stream().map(p -> p.getPort()).toList());
        // non-root, read-only root, model read-only from the PVC
        var pod = TypedChecks.workloads(o).stream().filter(w -> TypedChecks.role(w).equals("decode")).findFirst().orElseThrow().template().getSpec();
        assertTrue(pod.getSecurityContext().getRunAsNonRoot());
        assertTrue(pod.getContainers().getFirst().getSecurityContext().getReadOnlyRootFilesystem());
        assertEquals("lightmesh-model", pod.getVolumes().stream().filter(v -> v.getName().equals("model")).findFirst().orElseThrow().getPersistentVolumeClaim().getClaimName());
        assertEquals("/models/model", TypedChecks.env(pod.getContainers().getFirst(), "LIGHTMESH_MODEL"));
        assertNull(envVar(router, "LIGHTMESH_API_KEY"), "no key configured: the API is open");
    }

    @Test
    void gpuNodesAskForGpusAndRunOpenCl() {
        List<HasMetadata> o = render("gpu-nodes");
        for (String role : List.of("prefill", "decode", "experts")) {
            Container c = container(o, role);
            assertEquals(new Quantity("1"), c.getResources().getLimits().get("nvidia.com/gpu"), role);
            assertEquals("opencl", TypedChecks.env(c, "LIGHTMESH_BACKEND"), role);
        }
        assertEquals("$(POD_INDEX)/8", TypedChecks.env(container(o, "experts"), "LIGHTMESH_SHARD"));
        assertFalse(container(o, "router").getResources().getLimits().containsKey("nvidia.com/gpu"), "the router computes nothing");
        assertNull(envVar(container(o, "router"), "LIGHTMESH_BACKEND"), "the router has no backend key");
    }

    /**
     * GPU pods point the driver's kernel compile cache into their /tmp by default, and at a node directory (a hostPath
     * mounted there) with kernelCache.hostPath; pods without a GPU carry neither.
     */
    @Test
    void gpuPodsKeepTheKernelCache() {
        List<HasMetadata> o = render("gpu-nodes");
        for (String role : List.of("prefill", "decode", "experts")) {
            Container c = container(o, role);
            assertEquals("/tmp/.nv/ComputeCache", TypedChecks.env(c, "CUDA_CACHE_PATH"), role);
            assertEquals("1073741824", TypedChecks.env(c, "CUDA_CACHE_MAXSIZE"), role);
            assertTrue(c.getVolumeMounts().stream().noneMatch(m -> m.getName().equals("kernel-cache")), role);
        }
        assertNull(envVar(container(o, "router"), "CUDA_CACHE_PATH"), "no GPU, no kernel cache");
        o = render("gpu-nodes", "kernelCache.hostPath", "/var/cache/lightmesh/kernels", "kernelCache.maxSizeBytes", "4294967296");
        for (String role : List.of("prefill", "decode", "experts")) {
            Container c = container(o, role);
            assertEquals("/var/cache/lightmesh/kernels", TypedChecks.env(c, "CUDA_CACHE_PATH"), role);
            assertEquals("4294967296", TypedChecks.env(c, "CUDA_CACHE_MAXSIZE"), role);
            assertTrue(c.getVolumeMounts().stream().anyMatch(m -> m.getName().equals("kernel-cache")
                    && m.getMountPath().equals("/var/cache/lightmesh/kernels")), role);
        }
        var pod = TypedChecks.workloads(o).stream().filter(w -> TypedChecks.role(w).equals("decode")).findFirst().orElseThrow()
                .template().getSpec();
        var volume = pod.getVolumes().stream().filter(v -> v.getName().equals("kernel-cache")).findFirst().orElseThrow();
        assertEquals("/var/cache/lightmesh/kernels", volume.getHostPath().getPath());
        assertEquals("DirectoryOrCreate", volume.getHostPath().getType());
        assertNull(envVar(container(render("default"), "prefill"), "CUDA_CACHE_PATH"), "the default prefill pod has no GPU");
    }

    @Test
    void externalKafkaReplacesTheBroker() {
        List<HasMetadata> o = render("external-kafka");
        assertTrue(Chart.all(o, StatefulSet.class).stream().noneMatch(s -> s.getMetadata().getName().endsWith("-kafka")));
        String bootstrap = "kafka-0.kafka.data.svc:9092,kafka-1.kafka.data.svc:9092";
        assertEquals(bootstrap, TypedChecks.env(container(o, "router"), "LIGHTMESH_KAFKA"));
        assertEquals(bootstrap, TypedChecks.env(container(o, "prefill"), "LIGHTMESH_KAFKA"));
        assertEquals("http://otel-collector.observability.svc:4317", TypedChecks.env(container(o, "decode"), "OTEL_EXPORTER_OTLP_ENDPOINT"));
        var volume = TypedChecks.workloads(o).getFirst().template().getSpec().getVolumes().stream().filter(v -> v.getName().equals("model")).findFirst().orElseThrow();
        assertEquals("registry.example.com/models/minimax-m1-tiny:1", volume.getImage().getReference());
    }

    /** The first trigger of each KEDA ScaledObject, by name. */
    @SuppressWarnings("unchecked")
    static Map<String, Map<String, Object>> triggers(List<HasMetadata> o) {
        Map<String, Map<String, Object>> triggerOf = new java.util.HashMap<>();
        for (GenericKubernetesResource s : Chart.all(o, GenericKubernetesResource.class)) {
            var triggers = (List<Map<String, Object>>) ((Map<String, Object>) s.get("spec")).get("triggers");
            triggerOf.put(s.getMetadata().getName(), triggers.getFirst());
        }
        return triggerOf;
    }

    @Test
    void autoscalingOwnsTheReplicas() {
        List<HasMetadata> o = render("autoscaling");
        assertEquals(0, Chart.all(o, HorizontalPodAutoscaler.class).size());
        Map<String, Map<String, Object>> triggerOf = triggers(o);
        assertEquals(Map.of("lm-lightmesh-prefill", "kafka", "lm-lightmesh-decode", "prometheus", "lm-lightmesh-experts", "prometheus"),
                triggerOf.entrySet().stream().collect(Collectors.toMap(Map.Entry::getKey, e -> (String) e.getValue().get("type"))));
        // expert shards follow the count the placement controller exports, bounded by the autoscaler's range
        @SuppressWarnings("unchecked") var experts = (Map<String, Object>) triggerOf.get("lm-lightmesh-experts").get("metadata");
        assertTrue(((String) experts.get("query")).startsWith("max(lightmesh_expert_shards_desired{"), experts.toString());
        assertEquals("1", experts.get("threshold"));
        Container router = container(o, "router");
        assertEquals("4:12", TypedChecks.env(router, "LIGHTMESH_AUTOSCALE_EXPERTS"));
        assertEquals("120", TypedChecks.env(router, "LIGHTMESH_REBALANCE_INTERVAL_S"));
        assertEquals("1.5", TypedChecks.env(router, "LIGHTMESH_IMBALANCE_THRESHOLD"));
        assertEquals("0.6", TypedChecks.env(router, "LIGHTMESH_EXPERT_TARGET_UTILISATION"));
        assertEquals("64", TypedChecks.env(container(o, "experts"), "LIGHTMESH_EXPERT_SLOTS"));
        for (var w : TypedChecks.workloads(o)) {
            if (!w.name().endsWith("-kafka") && !w.name().endsWith("-router")) assertNull(w.replicas(), w.name());
        }
        // an HPA instead: the same count as an external metric (through a Prometheus adapter), one per replica
        HorizontalPodAutoscaler hpa = Chart.all(render("autoscaling", "experts.autoscaling.kind", "hpa"), HorizontalPodAutoscaler.class).getFirst();
        assertEquals("lightmesh_expert_shards_desired", hpa.getSpec().getMetrics().getFirst().getExternal().getMetric().getName());
        assertEquals("StatefulSet", hpa.getSpec().getScaleTargetRef().getKind());
        // with autoscaling off, replicas are set
        for (var w : TypedChecks.workloads(render("default"))) assertNotNull(w.replicas(), w.name());
    }

    @Test
    void severalRoutersWithoutAControllerAndMeshTls() throws Exception {
        List<HasMetadata> o = render("ha-routers");
        Container router = container(o, "router");
        assertEquals("false", TypedChecks.env(router, "LIGHTMESH_PLACEMENT_CONTROLLER"));
        assertTrue(Chart.all(o, Service.class).stream().noneMatch(s -> s.getMetadata().getName().endsWith("-placement")));
        for (String role : List.of("decode", "prefill")) {
            assertEquals("dns:lm-lightmesh-experts.llm.svc.cluster.local:9200", TypedChecks.env(container(o, role), "LIGHTMESH_EXPERTS"), role);
            assertNull(envVar(container(o, role), "LIGHTMESH_PLACEMENT"), role);
        }
        // request limits as the router's keys
        assertEquals("8192", TypedChecks.env(router, "LIGHTMESH_MAX_NEW_TOKENS"));
        assertEquals("200000", TypedChecks.env(router, "LIGHTMESH_MAX_PROMPT_TOKENS"));
        assertEquals("8", TypedChecks.env(router, "LIGHTMESH_MAX_STOP_STRINGS"));
        assertEquals("48", TypedChecks.env(container(o, "experts"), "LIGHTMESH_EXPERT_MEMORY_GIB"));
        // the routers scale on CPU, the shards on their tokens per second
        var hpas = Chart.all(o, HorizontalPodAutoscaler.class);
        assertEquals(List.of("lm-lightmesh-experts", "lm-lightmesh-router"), hpas.stream().map(h -> h.getMetadata().getName()).sorted().toList());
        // mutual TLS: every service gets the Secret's files; the router's probes speak HTTPS
        for (String role : List.of("router", "prefill", "decode", "experts")) {
            Container c = container(o, role);
            assertEquals("/etc/lightmesh/mesh-tls/ca.crt", TypedChecks.env(c, "LIGHTMESH_TLS_CA"), role);
            assertTrue(c.getVolumeMounts().stream().anyMatch(m -> m.getName().equals("mesh-tls")), role);
            assertEquals(role.equals("router") ? "HTTPS" : "HTTP", c.getReadinessProbe().getHttpGet().getScheme(), role);
        }
        var secret = TypedChecks.workloads(o).getFirst().template().getSpec().getVolumes().stream().filter(v -> v.getName().equals("mesh-tls")).findFirst().orElseThrow();
        assertEquals("lightmesh-mesh-tls", secret.getSecret().getSecretName());
        Pod hook = Chart.testHook(scratch, List.of(Chart.valueSet("ha-routers")));
        assertTrue(TypedChecks.env(hook.getSpec().getContainers().getFirst(), "ROUTER").startsWith("https://"), "helm test speaks HTTPS");
    }

    @Test
    void combinationsThatCannotWorkAreRefusedNamingTheKeys() throws Exception {
        // two routers would run two placement controllers over the same shards
        refused("router:\n  replicas: 2\n", "placement.controller");
        refused("router:\n  autoscaling: {enabled: true}\n", "router.autoscaling");
        refused("tls:\n  enabled: true\n  secretName: a\n  mesh: {enabled: true, secretName: b}\n", "tls.mesh.enabled");
        refused("tls:\n  mesh: {enabled: true}\n", "secretName");
        refused("router:\n  limits: {maxNewTokenz: 5}\n", "maxNewTokenz");
    }

    @Test
    void anExistingSecretKeyAndTls() throws Exception {
        List<HasMetadata> o = render("secret-tls");
        assertTrue(Chart.all(o, Secret.class).isEmpty(), "the Secret is the user's own");
        Container router = container(o, "router");
        var ref = envVar(router, "LIGHTMESH_API_KEY").getValueFrom().getSecretKeyRef();
        assertEquals("lightmesh-api-key", ref.getName());
        assertEquals("key", ref.getKey());
        assertEquals("/etc/lightmesh/tls/tls.crt", TypedChecks.env(router, "QUARKUS_HTTP_SSL_CERTIFICATE_FILES"));
        assertTrue(router.getPorts().stream().anyMatch(p -> p.getName().equals("https") && p.getContainerPort() == 8443));
        Ingress ing = Chart.all(o, Ingress.class).getFirst();
        assertEquals("llm.example.com", ing.getSpec().getRules().getFirst().getHost());
        assertEquals("lightmesh-api-key", Chart.testHook(scratch, List.of(Chart.valueSet("secret-tls"))).getSpec().getContainers().getFirst().getEnv().stream()
                .filter(e -> e.getName().equals("API_KEY")).findFirst().orElseThrow().getValueFrom().getSecretKeyRef().getName(), "helm test sends the key");
        // a key given as a value becomes a Secret of the chart
        List<HasMetadata> own = render("default", "apiKey.value", "s3cret");
        Secret s = Chart.all(own, Secret.class).stream().findFirst().orElseThrow(() -> new AssertionError(own.stream().map(x -> x.getKind() + "/" + x.getMetadata().getName()).toList()));
        assertEquals("lm-lightmesh-api-key", s.getMetadata().getName());
        assertEquals("lm-lightmesh-api-key", envVar(container(own, "router"), "LIGHTMESH_API_KEY").getValueFrom().getSecretKeyRef().getName());
    }

    @Test
    void settingsBecomeConfigKeysAndUnknownOnesAreCaught() {
        List<HasMetadata> o = render("cpu-only");
        assertEquals("64", TypedChecks.env(container(o, "router"), "LIGHTMESH_MAX_IN_FLIGHT"));
        assertEquals("128", TypedChecks.env(container(o, "router"), "LIGHTMESH_DEFAULT_MAX_NEW_TOKENS"));
        // the check itself: a key the router does not have is reported
        List<String> problems = TypedChecks.settingsAreConfigKeys(render("default", "router.settings.maxInFlihgt", "3"));
        assertEquals(1, problems.size(), problems.toString());
        assertTrue(problems.getFirst().contains("LIGHTMESH_MAX_IN_FLIHGT"), problems.getFirst());
    }

    /** A values file with one mistake; helm template must refuse it with a message naming {@code key}. */
    void refused(String yaml, String key) throws Exception {
        Path f = Files.writeString(scratch.resolve("mistake.yaml"), yaml);
        Exception e = assertThrows(Exception.class, () -> Chart.template(List.of(f)), yaml);
        assertTrue(e.getMessage().contains(key), () -> "the error should name " + key + ": " + e.getMessage());
    }

    @Test
    void theSchemaRefusesTypicalMistakesNamingTheKey() throws Exception {
        refused("rooter:\n  replicas: 2\n", "rooter");                          // a misspelt role
        refused("decode:\n  budgetGB: 16\n", "budgetGB");                        // a misspelt setting
        refused("decode:\n  replicas: two\n", "replicas");                       // a wrong type
        refused("prefill:\n  gpu: \"1\"\n", "gpu");                             // a number as a string
        refused("model:\n  source: nfs\n", "source");                            // not one of pvc, hostPath, image
        refused("kafka:\n  enabled: false\n", "bootstrapServers");               // external Kafka without servers
        refused("router:\n  autoscaling:\n    kind: vpa\n", "kind");             // no such autoscaler
        refused("tls:\n  enabled: true\n", "secretName");                        // TLS without a certificate
        refused("experts:\n  settings:\n    Bad_Key: 1\n", "Bad_Key");           // not a lightmesh.* key name
        refused("decode:\n  grpcPort: 70000\n", "grpcPort");                     // not a port
    }

    @Test
    void theSchemaStaysOpenForKubernetesObjects() throws Exception {
        Path f = Files.writeString(scratch.resolve("open.yaml"), """
                decode:
                  resources: {limits: {nvidia.com/gpu: 2, memory: 90Gi, example.com/fpga: 1}}
                  nodeSelector: {cloud.google.com/gke-accelerator: nvidia-h100-80gb}
                  tolerations: [{key: dedicated, operator: Equal, value: llm, effect: NoSchedule}]
                  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: a, operator: Exists}]}]}}}
                  podAnnotations: {example.com/team: ml}
                  env: [{name: EXTRA, value: "1"}, {name: FROM_FIELD, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
                  securityContext: {runAsUser: 2000}
                """);
        List<HasMetadata> o = Chart.parse(Chart.template(List.of(f)));
        Container d = container(o, "decode");
        assertEquals(new Quantity("2"), d.getResources().getLimits().get("nvidia.com/gpu"));
        assertEquals("1", TypedChecks.env(d, "EXTRA"));
        assertEquals(2000L, d.getSecurityContext().getRunAsUser(), "the role's own securityContext over the chart's");
        assertTrue(d.getSecurityContext().getReadOnlyRootFilesystem(), "merged with the chart's defaults");
        assertTrue(TypedChecks.all(o).isEmpty(), () -> String.join("\n", TypedChecks.all(o)));
    }

    @Test
    void discoveredDeploymentsOfTheDecodeWorkersAreDeployments() {
        // decode pods come and go with the Deployment; the router follows the headless Service (no host list)
        var d = Chart.all(render("default"), Deployment.class).stream().filter(x -> x.getMetadata().getName().equals("lm-lightmesh-decode")).findFirst().orElseThrow();
        assertEquals("$(POD_IP):9100", TypedChecks.env(d.getSpec().getTemplate().getSpec().getContainers().getFirst(), "LIGHTMESH_ADVERTISE"));
    }
}
