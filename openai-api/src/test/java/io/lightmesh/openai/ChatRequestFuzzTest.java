package io.lightmesh.openai;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.vertx.core.json.JsonObject;

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
        JsonObject json = RequestBodies.json(body);
        if (json == null) return;
        ChatCompletions.Call call;
        try {
            call = ChatCompletions.parse(json, "fuzz");
        } catch (ApiError e) {
            RequestBodies.assertClientError(e);
            return;
        }
        assertNotNull(call.request());
        assertFalse(call.request().messages().isEmpty());
    }
}
