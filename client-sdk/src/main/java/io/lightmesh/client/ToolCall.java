package io.lightmesh.client;

import java.util.Objects;

/**
 * A call of a {@link Tool} made by the model.
 *
 * @param id            the server-chosen id; send it back in the {@link ChatMessage#toolResult tool result}
 * @param index         position of the call within the model's turn, from 0
 * @param name          the function called
 * @param argumentsJson the arguments object as JSON text (e.g. {@code {"city":"Paris"}})
 */
public record ToolCall(String id, int index, String name, String argumentsJson) {
    /** Turns null id or arguments into {@code ""} (and {@code "{}"}); the name is required. */
    public ToolCall {
        Objects.requireNonNull(name, "name");
        id = id == null ? "" : id;
        argumentsJson = argumentsJson == null || argumentsJson.isEmpty() ? "{}" : argumentsJson;
    }
}
