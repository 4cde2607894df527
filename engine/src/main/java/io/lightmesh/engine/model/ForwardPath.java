package io.lightmesh.engine.model;

/**
 * Which path a model's forward pass takes, as a worker reports it (log, health data, metrics):
 *
 * @param deviceDecode   decode steps run device-resident ({@link ResidentDecoder}), else on the host's arrays
 * @param devicePrefill  prefill runs device-resident, else on the host's arrays
 * @param remoteExperts  the experts are computed outside this process (expert shards), else in-process
 * @param microBatching  device path with remote experts: steps and chunks split into two micro-batches that
 *                       alternate, one's attention on the device while the other's experts are computed remotely
 */
public record ForwardPath(boolean deviceDecode, boolean devicePrefill, boolean remoteExperts, boolean microBatching) {

    /** "device-resident" or "host-arrays". */
    public static String name(boolean device) { return device ? "device-resident" : "host-arrays"; }

    /** One line: "decode device-resident, prefill device-resident, experts remote, micro-batching on". */
    @Override
    public String toString() {
        return "decode " + name(deviceDecode) + ", prefill " + name(devicePrefill) + ", experts "
                + (remoteExperts ? "remote" : "local") + ", micro-batching " + (microBatching ? "on" : "off");
    }
}
