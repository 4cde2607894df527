package io.lightmesh.openai;

import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;

import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A request body's bytes as {@link OpenAiApi} reads them, for the fuzz tests: JSON that is not an object is the 400
 * the route answers before any parsing of fields; an {@link ApiError} from a parser must be a 4xx with a message
 * (400 invalid or unsupported, 404 unknown model); anything else escaping the parser would be answered 500.
 */
final class RequestBodies {
    private RequestBodies() {}

    /** The body as the route's JSON object, or null where the route answers 400 "could not parse the JSON body". */
    static JsonObject json(byte[] body) {
        try {
            return Buffer.buffer(body).toJsonObject();
        } catch (RuntimeException e) {
            return null; // OpenAiApi.json: any decoding failure is that 400
        }
    }

    /**
     * The fuzz harness of a route's parser: the body's parse, or null where the route refuses it, before parsing
     * fields (not a JSON object) or in the parser (an {@link ApiError}, held to {@link #assertClientError}). Any other
     * exception escapes: the finding.
     */
    static <T> T parsedOrRefused(byte[] body, Function<JsonObject, T> parse) {
        JsonObject json = json(body);
        if (json == null) return null;
        try {
            return parse.apply(json);
        } catch (ApiError e) {
            assertClientError(e);
            return null;
        }
    }

    /** An error a parser may throw: the client's fault, said in OpenAI's shape. */
    static void assertClientError(ApiError e) {
        assertTrue(e.status >= 400 && e.status < 500, () -> "status " + e.status + ": " + e.getMessage());
        assertNotNull(e.getMessage());
        assertNotNull(e.toJson().getJsonObject("error").getString("type"));
    }
}
