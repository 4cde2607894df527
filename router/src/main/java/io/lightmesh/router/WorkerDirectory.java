package io.lightmesh.router;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.proto.v1.ComponentHealth;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.HealthResponse;
import io.lightmesh.proto.v1.ServingStatus;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.logging.Logger;

/**
 * What the router knows of the mesh, refreshed by {@link #poll}: each decode worker's and expert shard's
 * Worker.Describe (or why it could not be reached), the members of the prefill group, and whether Kafka answers.
 * From it: the router's health, the decode worker a request goes to, and the channels to the workers.
 */
final class WorkerDirectory implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(WorkerDirectory.class.getName());

    private final RouterCore.Settings settings;
    /** The decode workers and expert shards now: the settings' fixed lists, or discovered ones that change. */
    private final Supplier<List<String>> decodeTargets, expertTargets;
    private final MeshModel model;
    private final Admin admin;
    private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    private final Map<String, WorkerInfo> decodeInfo = new ConcurrentHashMap<>();   // reachable decode workers
    private final Map<String, String> decodeErrors = new ConcurrentHashMap<>();
    private final Map<String, WorkerInfo> expertInfo = new ConcurrentHashMap<>();
    private final Map<String, String> expertErrors = new ConcurrentHashMap<>();
    private volatile int prefillMembers = -1;
    private volatile String kafkaError = "not checked yet";

    /** @param admin asked whether Kafka answers and who is in the prefill group */
    WorkerDirectory(RouterCore.Settings settings, Supplier<List<String>> decodeTargets, Supplier<List<String>> expertTargets,
                    MeshModel model, Admin admin) {
        this.settings = settings;
        this.decodeTargets = decodeTargets;
        this.expertTargets = expertTargets;
        this.model = model;
        this.admin = admin;
    }

    /**
     * Channels to workers run their callbacks on the transport thread: a decode event is folded and relayed to the
     * client there, without a hand-off to an executor per token.
     */
    ManagedChannel channel(String target) { return channels.computeIfAbsent(target, Grpc::directChannel); }

    void poll() {
        List<String> decode = decodeTargets.get(), experts = expertTargets.get();
        for (String t : decode) describe(t, decodeInfo, decodeErrors);
        for (String t : experts) describe(t, expertInfo, expertErrors);
        forgetGone(decode, experts);
        try {
            // each admin call bounded as its wait is: a call left behind would wait for the broker the admin client's
            // default.api.timeout.ms (60 s), and every call waiting re-bootstraps the client (KafkaBackoff)
            admin.describeCluster(new org.apache.kafka.clients.admin.DescribeClusterOptions().timeoutMs(5000)).nodes()
                    .get(6, TimeUnit.SECONDS);
            kafkaError = null;
        } catch (Exception e) {
            kafkaError = String.valueOf(e.getCause() != null ? e.getCause() : e);
        }
        if (kafkaError != null) {
            prefillMembers = -1; // no group to look up while the broker is away
            return;
        }
        try {
            ConsumerGroupDescription g = admin.describeConsumerGroups(List.of(settings.prefillGroup()),
                            new org.apache.kafka.clients.admin.DescribeConsumerGroupsOptions().timeoutMs(10_000))
                    .describedGroups().get(settings.prefillGroup()).get(11, TimeUnit.SECONDS);
            prefillMembers = g.members().size();
        } catch (Exception e) {
            LOG.fine("prefill group lookup failed: " + e);
            prefillMembers = -1;
        }
    }

    private void describe(String target, Map<String, WorkerInfo> info, Map<String, String> errors) {
        try {
            WorkerInfo w = WorkerGrpc.newBlockingStub(channel(target)).withDeadlineAfter(1, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
            if (!w.getModelFingerprint().equals(model.fingerprint())) {
                info.remove(target);
                String wrong = "runs model " + w.getModelFingerprint() + ", router has " + model.fingerprint();
                // a misconfiguration (another checkpoint): said once at WARNING, not left to the readiness data alone
                if (!wrong.equals(errors.put(target, wrong))) LOG.warning(w.getWorkerId() + " at " + target + " " + wrong + "; not used (lightmesh.model differs)");
                return;
            }
            info.put(target, w);
            errors.remove(target);
        } catch (StatusRuntimeException e) {
            info.remove(target);
            errors.put(target, e.getStatus().toString());
        }
    }

    /** Peers no longer listed (pods gone): their state and channels go, so the maps do not grow with pod churn. */
    private void forgetGone(List<String> decode, List<String> experts) {
        decodeInfo.keySet().retainAll(decode);
        decodeErrors.keySet().retainAll(decode);
        expertInfo.keySet().retainAll(experts);
        expertErrors.keySet().retainAll(experts);
        for (String t : List.copyOf(channels.keySet())) {
            if (!decode.contains(t) && !experts.contains(t)) {
                ManagedChannel ch = channels.remove(t);
                if (ch != null) ch.shutdown(); // calls still on it (a request being resumed) finish
            }
        }
    }

    HealthResponse health() {
        List<ComponentHealth> parts = new ArrayList<>();
        boolean ok = kafkaError == null;
        parts.add(ComponentHealth.newBuilder().setName("kafka").setAddress(settings.bootstrapServers()).setReachable(kafkaError == null)
                .setDetail(kafkaError == null ? "topic " + settings.topic() : kafkaError).build());
        parts.add(ComponentHealth.newBuilder().setName("prefill").setReachable(prefillMembers > 0)
                .setDetail(prefillMembers + " consumer(s) in group " + settings.prefillGroup()).build());
        ok &= prefillMembers > 0;
        boolean anyDecode = false;
        for (String t : decodeTargets.get()) {
            WorkerInfo w = decodeInfo.get(t);
            anyDecode |= w != null;
            parts.add(ComponentHealth.newBuilder().setName("decode/" + (w != null ? w.getWorkerId() : t)).setAddress(t).setReachable(w != null)
                    .setDetail(w != null ? w.getLoad().getActiveSequences() + " sequences, " + w.getLoad().getStateBytesUsed() + " of "
                            + w.getLoad().getStateBytesBudget() + " state bytes" : decodeErrors.getOrDefault(t, "not checked yet")).build());
        }
        ok &= anyDecode;
        List<String> expertList = expertTargets.get();
        if (!expertList.isEmpty()) {
            List<ExpertPlacement.Shard> shards = new ArrayList<>();
            for (String t : expertList) {
                WorkerInfo w = expertInfo.get(t);
                if (w != null) {
                    shards.add(ExpertPlacement.Shard.fromWorkerInfo(w, t));
                }
                parts.add(ComponentHealth.newBuilder().setName("expert/" + (w != null ? w.getWorkerId() : t)).setAddress(t).setReachable(w != null)
                        .setDetail(w != null ? w.getLoad().getBatchesServed() + " batches served" : expertErrors.getOrDefault(t, "not checked yet")).build());
            }
            List<String> missing = new ExpertPlacement(model.config().numLayers(), model.config().numExperts(), shards).missing();
            ok &= missing.isEmpty();
            parts.add(ComponentHealth.newBuilder().setName("experts").setReachable(missing.isEmpty())
                    .setDetail(missing.isEmpty() ? "every (layer, expert) has a reachable shard" : missing.size() + " (layer, expert) pairs without a shard, e.g. " + missing.get(0)).build());
        }
        return HealthResponse.newBuilder().setStatus(ok ? ServingStatus.SERVING_STATUS_SERVING : ServingStatus.SERVING_STATUS_NOT_SERVING)
                .addAllComponents(parts).build();
    }

    /** The reachable decode worker with the most free state budget per live sequence; null when none. */
    String pickDecode(Set<String> avoid) { return pickDecode(decodeTargets.get(), decodeInfo, avoid); }

    /**
     * Of {@code targets} not in {@code avoid}: the one whose last Describe shows the most free state budget per live
     * sequence (active + pending, plus this one); before any was described, the first listed; null when none is left.
     */
    static String pickDecode(List<String> targets, Map<String, WorkerInfo> described, Set<String> avoid) {
        String best = null;
        double bestScore = Double.NEGATIVE_INFINITY;
        for (String t : targets) {
            WorkerInfo w = described.get(t);
            if (w == null || avoid.contains(t)) continue;
            double free = w.getLoad().getStateBytesBudget() - w.getLoad().getStateBytesUsed();
            double score = free / (1 + w.getLoad().getActiveSequences() + w.getLoad().getPendingSequences());
            if (score > bestScore) { bestScore = score; best = t; }
        }
        if (best == null) for (String t : targets) if (!avoid.contains(t)) return t; // not polled yet
        return best;
    }

    /** The largest state budget of the decode workers described; 0 before the first poll. */
    long largestDecodeBudget() {
        return decodeInfo.values().stream().mapToLong(w -> w.getLoad().getStateBytesBudget()).max().orElse(0);
    }

    @Override
    public void close() { for (ManagedChannel ch : channels.values()) Grpc.shutdown(ch); }
}
