package io.lightmesh.helm;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.IntOrString;
import io.fabric8.kubernetes.api.model.PodTemplateSpec;
import io.fabric8.kubernetes.api.model.Probe;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServicePort;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.autoscaling.v2.HorizontalPodAutoscaler;
import io.fabric8.kubernetes.api.model.networking.v1.Ingress;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import io.lightmesh.decode.app.DecodeConfig;
import io.lightmesh.expert.app.ExpertConfig;
import io.lightmesh.mesh.MeshTls;
import io.lightmesh.prefill.app.PrefillConfig;
import io.lightmesh.router.app.RouterConfig;

import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * The checks every rendering of the chart must pass, on the typed objects. Each returns the problems found (empty:
 * fine), so a failure lists all of them.
 */
final class TypedChecks {
    /** The @ConfigMapping of each role's service: every LIGHTMESH_* variable a pod sets must be one of its keys. */
    static final Map<String, Class<?>> CONFIG = Map.of("router", RouterConfig.class, "prefill", PrefillConfig.class,
            "decode", DecodeConfig.class, "experts", ExpertConfig.class);
    /** Variables that are the image's or Kubernetes's, not the service's keys. */
    static final Set<String> NOT_KEYS = Set.of("LIGHTMESH_HOME");
    /** Keys every service reads outside its @ConfigMapping: the mesh's TLS files ({@link MeshTls}, TlsConfigSource). */
    static final Set<String> MESH_TLS_KEYS = java.util.stream.Stream.of(MeshTls.CERT, MeshTls.KEY, MeshTls.CA, MeshTls.VERIFY_HOSTNAME)
            .map(ConfigKeys::env).collect(Collectors.toUnmodifiableSet());

    private TypedChecks() {}

    /** A workload's name, kind, labels and pod template. */
    record Workload(String kind, String name, Map<String, String> selector, PodTemplateSpec template, Integer replicas) {}

    static List<Workload> workloads(List<HasMetadata> objects) {
        List<Workload> w = new ArrayList<>();
        for (Deployment d : Chart.all(objects, Deployment.class)) {
            w.add(new Workload("Deployment", d.getMetadata().getName(), d.getSpec().getSelector().getMatchLabels(), d.getSpec().getTemplate(), d.getSpec().getReplicas()));
        }
        for (StatefulSet s : Chart.all(objects, StatefulSet.class)) {
            w.add(new Workload("StatefulSet", s.getMetadata().getName(), s.getSpec().getSelector().getMatchLabels(), s.getSpec().getTemplate(), s.getSpec().getReplicas()));
        }
        return w;
    }

    static String role(Workload w) { return w.template().getMetadata().getLabels().get("app.kubernetes.io/component"); }

    /** Fields that landed in a model class's additionalProperties: misspelt or misplaced keys in a template. */
    static List<String> unknownFields(List<HasMetadata> objects) {
        List<String> problems = new ArrayList<>();
        for (HasMetadata o : objects) {
            if (o instanceof GenericKubernetesResource) continue;
            walk(o, o.getKind() + "/" + o.getMetadata().getName(), problems, new IdentityHashMap<>());
        }
        return problems;
    }

    private static void walk(Object o, String path, List<String> problems, Map<Object, Boolean> seen) {
        if (o == null || seen.put(o, true) != null) return;
        if (o instanceof Collection<?> c) {
            int i = 0;
            for (Object x : c) walk(x, path + "[" + i++ + "]", problems, seen);
            return;
        }
        if (o instanceof Map<?, ?> m) {
            for (var e : m.entrySet()) walk(e.getValue(), path + "." + e.getKey(), problems, seen);
            return;
        }
        if (!o.getClass().getName().startsWith("io.fabric8.kubernetes.api.model")) return;
        for (Method g : o.getClass().getMethods()) {
            if (g.getParameterCount() != 0 || !g.getName().startsWith("get") || g.getName().equals("getClass")) continue;
            try {
                Object v = g.invoke(o);
                if (g.getName().equals("getAdditionalProperties")) {
                    if (v instanceof Map<?, ?> extra && !extra.isEmpty()) problems.add(path + ": unknown field(s) " + extra.keySet());
                } else {
                    walk(v, path + "." + g.getName().substring(3), problems, seen);
                }
            } catch (ReflectiveOperationException | RuntimeException ignored) {
                // a getter that computes from missing parts: nothing to walk
            }
        }
    }

    /** Every Service selects some workload's pods and every target port is a port of that pod's container. */
    static List<String> servicesMatchPods(List<HasMetadata> objects) {
        List<String> problems = new ArrayList<>();
        List<Workload> ws = workloads(objects);
        for (Service s : Chart.all(objects, Service.class)) {
            Map<String, String> sel = s.getSpec().getSelector();
            List<Workload> matched = ws.stream().filter(w -> sel != null && !sel.isEmpty()
                    && w.template().getMetadata().getLabels().entrySet().containsAll(sel.entrySet())).toList();
            if (matched.isEmpty()) { problems.add("Service " + s.getMetadata().getName() + " selects no pods: " + sel); continue; }
            for (Workload w : matched) {
                List<ContainerPort> ports = w.template().getSpec().getContainers().stream().flatMap(c -> c.getPorts().stream()).toList();
                for (ServicePort p : s.getSpec().getPorts()) {
                    IntOrString t = p.getTargetPort();
                    boolean ok = t == null ? ports.stream().anyMatch(c -> c.getContainerPort().equals(p.getPort()))
                            : t.getStrVal() != null ? ports.stream().anyMatch(c -> t.getStrVal().equals(c.getName()))
                            : ports.stream().anyMatch(c -> c.getContainerPort().equals(t.getIntVal()));
                    if (!ok) problems.add("Service " + s.getMetadata().getName() + " port " + p.getName() + " targets " + t + ", not a port of " + w.name());
                }
            }
        }
        return problems;
    }

    /** Every mesh container probes /q/health/live (startup, liveness) and /q/health/ready (readiness) on its http port. */
    static List<String> probesHitHealth(List<HasMetadata> objects) {
        List<String> problems = new ArrayList<>();
        for (Workload w : workloads(objects)) {
            if (!CONFIG.containsKey(role(w))) continue; // Kafka: its own probes
            for (Container c : w.template().getSpec().getContainers()) {
                check(problems, w, c, "startup", c.getStartupProbe(), "/q/health/live");
                check(problems, w, c, "liveness", c.getLivenessProbe(), "/q/health/live");
                check(problems, w, c, "readiness", c.getReadinessProbe(), "/q/health/ready");
            }
        }
        return problems;
    }

    private static void check(List<String> problems, Workload w, Container c, String which, Probe p, String path) {
        if (p == null || p.getHttpGet() == null) { problems.add(w.name() + ": no " + which + " probe over HTTP"); return; }
        if (!path.equals(p.getHttpGet().getPath())) problems.add(w.name() + ": " + which + " probe on " + p.getHttpGet().getPath() + ", not " + path);
        IntOrString port = p.getHttpGet().getPort();
        boolean ok = c.getPorts().stream().anyMatch(cp -> port.getStrVal() != null ? port.getStrVal().equals(cp.getName()) : cp.getContainerPort().equals(port.getIntVal()));
        if (!ok) problems.add(w.name() + ": " + which + " probe port " + port + " is not a container port");
        String httpPort = env(c, "LIGHTMESH_HTTP_PORT");
        int probed = port.getStrVal() != null ? c.getPorts().stream().filter(cp -> port.getStrVal().equals(cp.getName())).map(ContainerPort::getContainerPort).findFirst().orElse(-1) : port.getIntVal();
        if (httpPort == null || Integer.parseInt(httpPort) != probed) problems.add(w.name() + ": the probe's port " + probed + " is not the service's HTTP port " + httpPort);
    }

    static String env(Container c, String name) {
        return c.getEnv().stream().filter(e -> e.getName().equals(name)).map(EnvVar::getValue).findFirst().orElse(null);
    }

    /** Every LIGHTMESH_* variable of a mesh pod is a key of its service's @ConfigMapping. */
    static List<String> settingsAreConfigKeys(List<HasMetadata> objects) {
        List<String> problems = new ArrayList<>();
        for (Workload w : workloads(objects)) {
            Class<?> mapping = CONFIG.get(role(w));
            if (mapping == null) continue;
            Set<String> known = ConfigKeys.of(mapping).stream().map(ConfigKeys::env).collect(Collectors.toSet());
            known.addAll(MESH_TLS_KEYS);
            for (Container c : w.template().getSpec().getContainers()) {
                for (EnvVar e : c.getEnv()) {
                    if (e.getName().startsWith("LIGHTMESH_") && !NOT_KEYS.contains(e.getName()) && !known.contains(e.getName())) {
                        problems.add(w.name() + " sets " + e.getName() + ", not a key of " + mapping.getSimpleName() + " " + ConfigKeys.of(mapping));
                    }
                }
            }
        }
        return problems;
    }

    /** Autoscalers and PDBs point at workloads that exist; an autoscaled workload leaves replicas to its autoscaler. */
    static List<String> autoscalersAndBudgetsTargetWorkloads(List<HasMetadata> objects) {
        List<String> problems = new ArrayList<>();
        List<Workload> ws = workloads(objects);
        for (HorizontalPodAutoscaler h : Chart.all(objects, HorizontalPodAutoscaler.class)) {
            var ref = h.getSpec().getScaleTargetRef();
            targets(problems, ws, "HPA " + h.getMetadata().getName(), ref.getKind(), ref.getName());
            if (h.getSpec().getMinReplicas() > h.getSpec().getMaxReplicas()) problems.add("HPA " + h.getMetadata().getName() + ": min above max");
            if (h.getSpec().getMetrics().isEmpty()) problems.add("HPA " + h.getMetadata().getName() + ": no metric");
        }
        for (GenericKubernetesResource g : Chart.all(objects, GenericKubernetesResource.class)) {
            if (!g.getKind().equals("ScaledObject")) { problems.add("unexpected untyped object " + g.getKind()); continue; }
            if (!"keda.sh/v1alpha1".equals(g.getApiVersion())) problems.add("ScaledObject " + g.getMetadata().getName() + ": apiVersion " + g.getApiVersion());
            Map<String, Object> spec = g.get("spec");
            @SuppressWarnings("unchecked") Map<String, Object> ref = (Map<String, Object>) spec.get("scaleTargetRef");
            targets(problems, ws, "ScaledObject " + g.getMetadata().getName(), (String) ref.get("kind"), (String) ref.get("name"));
            @SuppressWarnings("unchecked") List<Map<String, Object>> triggers = (List<Map<String, Object>>) spec.get("triggers");
            if (triggers == null || triggers.isEmpty()) problems.add("ScaledObject " + g.getMetadata().getName() + ": no trigger");
        }
        for (PodDisruptionBudget p : Chart.all(objects, PodDisruptionBudget.class)) {
            Map<String, String> sel = p.getSpec().getSelector().getMatchLabels();
            if (ws.stream().noneMatch(w -> w.template().getMetadata().getLabels().entrySet().containsAll(sel.entrySet()))) {
                problems.add("PDB " + p.getMetadata().getName() + " selects no pods");
            }
        }
        return problems;
    }

    private static void targets(List<String> problems, List<Workload> ws, String what, String kind, String name) {
        var w = ws.stream().filter(x -> x.kind().equals(kind) && x.name().equals(name)).findFirst();
        if (w.isEmpty()) problems.add(what + " scales " + kind + "/" + name + ", which is not rendered");
        else if (w.get().replicas() != null) problems.add(what + ": " + name + " still sets replicas (" + w.get().replicas() + ")");
    }

    /** An Ingress routes to a Service port that exists. */
    static List<String> ingressesRouteToServices(List<HasMetadata> objects) {
        List<String> problems = new ArrayList<>();
        List<Service> services = Chart.all(objects, Service.class);
        for (Ingress i : Chart.all(objects, Ingress.class)) {
            for (var rule : i.getSpec().getRules()) {
                for (var path : rule.getHttp().getPaths()) {
                    var b = path.getBackend().getService();
                    boolean ok = services.stream().anyMatch(s -> s.getMetadata().getName().equals(b.getName()) && s.getSpec().getPorts().stream()
                            .anyMatch(p -> b.getPort().getName() != null ? b.getPort().getName().equals(p.getName()) : p.getPort().equals(b.getPort().getNumber())));
                    if (!ok) problems.add("Ingress " + i.getMetadata().getName() + " routes to " + b.getName() + ":" + b.getPort() + ", not a Service port");
                }
            }
        }
        return problems;
    }

    static List<String> all(List<HasMetadata> objects) {
        List<String> p = new ArrayList<>();
        p.addAll(unknownFields(objects));
        p.addAll(servicesMatchPods(objects));
        p.addAll(probesHitHealth(objects));
        p.addAll(settingsAreConfigKeys(objects));
        p.addAll(autoscalersAndBudgetsTargetWorkloads(objects));
        p.addAll(ingressesRouteToServices(objects));
        return p;
    }
}
