package io.lightmesh.client;

import java.util.Objects;

/**
 * A function the model may call; offered to it in the chat's system turn.
 *
 * @param name           the function's name, as the model must write it in a call
 * @param description    what the function does, for the model ({@code ""} for none)
 * @param parametersJson JSON Schema of the arguments object, as JSON text ({@code ""}: no arguments)
 */
public record Tool(String name, String description, String parametersJson) {
    /** Checks the name and turns null description or schema into {@code ""}. */
    public Tool {
        Objects.requireNonNull(name, "name");
        if (name.isBlank()) throw new IllegalArgumentException("a tool needs a name");
        description = description == null ? "" : description;
        parametersJson = parametersJson == null ? "" : parametersJson;
    }

    /** A function tool: {@code Tool.function("get_weather", "Current weather", "{\"type\":\"object\",...}")}. */
    public static Tool function(String name, String description, String parametersJson) {
        return new Tool(name, description, parametersJson);
    }
}
