package io.lightmesh.client;

import java.util.List;

/**
 * Whether a server can take requests, and the state of each part of the mesh.
 *
 * @param serving    true when every part needed to serve a request is reachable
 * @param components one entry per part checked
 */
public record Health(boolean serving, List<Component> components) {
    /** Copies the list. */
    public Health { components = List.copyOf(components); }

    /**
     * The health of one part.
     *
     * @param name      e.g. {@code "kafka"}, {@code "prefill"}, {@code "decode/<id>"}, {@code "expert/<id>"}
     * @param address   its address, {@code ""} when none
     * @param reachable whether it answered its last check
     * @param detail    the error, or its load
     */
    public record Component(String name, String address, boolean reachable, String detail) {}
}
