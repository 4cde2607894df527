package io.lightmesh.openai;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.vertx.core.json.JsonObject;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * {@code POST /v1/completions} bodies from outside through {@link TextCompletions#parse}: a request, or a 4xx
 * {@link ApiError}; anything else is a finding. Seeds (CompletionRequestFuzzTestInputs): text and token-id prompts,
 * echo, stop strings, the thinking budget forms.
 */
class CompletionRequestFuzzTest {
    @FuzzTest(maxDuration = "10s")
    void completionBody(byte[] body) {
        JsonObject json = RequestBodies.json(body);
        if (json == null) return;
        TextCompletions.Call call;
        try {
            call = TextCompletions.parse(json, "fuzz", TextCompletions.DEFAULT_MAX_TOKENS);
        } catch (ApiError e) {
            RequestBodies.assertClientError(e);
            return;
        }
        assertNotNull(call.request());
    }
}
