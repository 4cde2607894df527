package io.lightmesh.openai;

import com.code_intelligence.jazzer.junit.FuzzTest;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * {@code POST /v1/chat/completions} bodies from outside through {@link ChatCompletions#parse}: a body is either
 * translated into a request (messages, tools and sampling all valid for the client SDK) or refused with a 4xx
 * {@link ApiError} naming what is wrong; any other exception (which the route would answer 500) is a finding.
 * Seeds (ChatRequestFuzzTestInputs): chats with system, user, assistant tool calls and tool results, tools and
 * tool_choice, every sampling field, streaming options, and a few bodies at the documented limits.
 */
class ChatRequestFuzzTest {
    @FuzzTest(maxDuration = "10s")
    void chatBody(byte[] body) {
        ChatCompletions.Call call = RequestBodies.parsedOrRefused(body, json -> ChatCompletions.parse(json, "fuzz"));
        if (call == null) return;
        assertNotNull(call.request());
        assertFalse(call.request().messages().isEmpty());
    }
}
