package io.lightmesh.engine.chat;

import java.util.Objects;

/**
 * One call of a tool by the model: the tool's name and its arguments as JSON text (an object, as the OpenAI API
 * carries them).
 */
public record ToolCall(String name, String arguments) {
    public ToolCall {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(arguments, "arguments");
    }
}
