package io.lightmesh.engine.chat;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.Objects;

/**
 * A tool the model may call: its name, what it does, and the JSON schema of its arguments.
 *
 * @param description may be null
 * @param parameters  a JSON schema object; may be null for a tool without arguments
 */
public record ToolDefinition(String name, String description, JsonNode parameters) {
    private static final ObjectMapper JSON = new ObjectMapper();

    public ToolDefinition {
        Objects.requireNonNull(name, "name");
    }

    /** A tool whose parameter schema is given as JSON text. */
    public static ToolDefinition of(String name, String description, String parametersJson) {
        try {
            return new ToolDefinition(name, description, parametersJson == null ? null : JSON.readTree(parametersJson));
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("parameters of tool " + name + " are not JSON: " + e.getOriginalMessage(), e);
        }
    }
}
