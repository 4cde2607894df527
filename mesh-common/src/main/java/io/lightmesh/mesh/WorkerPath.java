package io.lightmesh.mesh;

import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.model.ForwardPath;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.proto.v1.WorkerInfo;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.logging.Logger;

/**
 * Which path a worker's engine runs, said the same way everywhere: one log line at start, the WorkerInfo fields
 * 30-35 (Worker.Describe), the worker's health data, and the gauge {@code lightmesh.worker.path} (value 1, the path
 * in its attributes: {@code lightmesh.worker}, {@code lightmesh.decode.path}, {@code lightmesh.prefill.path},
 * {@code lightmesh.experts}, {@code lightmesh.micro_batching}, {@code lightmesh.backend}, on the device path
 * {@code lightmesh.device.kernels}; expert shards {@code lightmesh.expert.compute} instead of the forward-pass ones).
 */
public final class WorkerPath {
    private static final Logger LOG = Logger.getLogger(WorkerPath.class.getName());
    static final AttributeKey<String> WORKER = AttributeKey.stringKey("lightmesh.worker"),
            DECODE = AttributeKey.stringKey("lightmesh.decode.path"),
            PREFILL = AttributeKey.stringKey("lightmesh.prefill.path"),
            EXPERTS = AttributeKey.stringKey("lightmesh.experts"),
            BACKEND = AttributeKey.stringKey("lightmesh.backend"),
            EXPERT_COMPUTE = AttributeKey.stringKey("lightmesh.expert.compute"),
            DEVICE_KERNELS = AttributeKey.stringKey("lightmesh.device.kernels");
    static final AttributeKey<Boolean> MICRO_BATCHING = AttributeKey.booleanKey("lightmesh.micro_batching");

    private WorkerPath() {}

    /** Logs a prefill or decode worker's path and registers its gauge on {@code otel}. */
    public static void announce(String kind, String workerId, MiniMaxModel model, OpenTelemetry otel) {
        ForwardPath p = model.path();
        String backend = Backends.describe(model.ops());
        String kernels = model.deviceKernels();
        LOG.info(kind + " worker " + workerId + ": " + p + "; backend " + backend + (kernels == null ? "" : "; " + kernels));
        var a = Attributes.builder().put(WORKER, workerId).put(DECODE, ForwardPath.name(p.deviceDecode()))
                .put(PREFILL, ForwardPath.name(p.devicePrefill())).put(EXPERTS, p.remoteExperts() ? "remote" : "local")
                .put(MICRO_BATCHING, p.microBatching()).put(BACKEND, backend);
        if (kernels != null) a.put(DEVICE_KERNELS, kernels);
        gauge(otel, a.build());
    }

    /** Logs an expert shard's way of computing ("device-grouped" or "host-arrays") and registers its gauge. */
    public static void announceShard(String shardId, String compute, MiniMaxModel model, OpenTelemetry otel) {
        String backend = Backends.describe(model.ops());
        LOG.info("expert shard " + shardId + ": experts " + compute + "; backend " + backend);
        gauge(otel, Attributes.builder().put(WORKER, shardId).put(EXPERT_COMPUTE, compute).put(BACKEND, backend).build());
    }

    private static void gauge(OpenTelemetry otel, Attributes a) {
        otel.getMeter(MeshTelemetry.SCOPE).gaugeBuilder("lightmesh.worker.path").ofLongs()
                .setDescription("1 for the path this worker's engine runs, named by the attributes")
                .buildWithCallback(m -> m.record(1, a));
    }

    /** Fills WorkerInfo's path fields (30-33, 35) for a prefill or decode worker. */
    public static WorkerInfo.Builder describe(WorkerInfo.Builder b, MiniMaxModel model) {
        ForwardPath p = model.path();
        String kernels = model.deviceKernels();
        return b.setDecodePath(ForwardPath.name(p.deviceDecode())).setPrefillPath(ForwardPath.name(p.devicePrefill()))
                .setMicroBatching(p.microBatching()).setBackend(Backends.describe(model.ops()))
                .setDeviceKernels(kernels == null ? "" : kernels);
    }

    /** The path as health data: decode_path, prefill_path, experts, micro_batching, backend (and device_kernels). */
    public static Map<String, Object> healthData(MiniMaxModel model) {
        ForwardPath p = model.path();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("decode_path", ForwardPath.name(p.deviceDecode()));
        m.put("prefill_path", ForwardPath.name(p.devicePrefill()));
        m.put("experts", p.remoteExperts() ? "remote" : "local");
        m.put("micro_batching", p.microBatching());
        m.put("backend", Backends.describe(model.ops()));
        String kernels = model.deviceKernels();
        if (kernels != null) m.put("device_kernels", kernels);
        return m;
    }
}
