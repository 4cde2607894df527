package io.lightmesh.openai;

import com.code_intelligence.jazzer.junit.FuzzTest;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * {@code POST /v1/completions} bodies from outside through {@link TextCompletions#parse}: a request, or a 4xx
 * {@link ApiError}; anything else is a finding. Seeds (CompletionRequestFuzzTestInputs): text and token-id prompts,
 * echo, stop strings, the thinking budget forms.
 */
class CompletionRequestFuzzTest {
    @FuzzTest(maxDuration = "10s")
    void completionBody(byte[] body) {
        TextCompletions.Call call = RequestBodies.parsedOrRefused(body,
                json -> TextCompletions.parse(json, "fuzz", TextCompletions.DEFAULT_MAX_TOKENS));
        if (call == null) return;
        assertNotNull(call.request());
    }
}
