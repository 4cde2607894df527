package io.lightmesh.engine.chat;

/** Text inside a {@code <tool_calls>} block that is not a valid call, with why. */
public record MalformedToolCall(String text, String error) {}
