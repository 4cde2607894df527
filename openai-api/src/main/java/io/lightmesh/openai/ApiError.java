package io.lightmesh.openai;

import io.grpc.Status;
import io.lightmesh.client.LightMeshException;
import io.vertx.core.json.JsonObject;

/**
 * An error as OpenAI's API reports it: an HTTP status and {@code {"error": {"message", "type", "param", "code"}}}.
 * Thrown by validation; made from gRPC failures by {@link #from(Throwable)}.
 */
final class ApiError extends RuntimeException {
    final int status;
    final String type;
    final String param;
    final String code;

    ApiError(int status, String type, String message, String param, String code) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400 invalid_request_error naming the offending parameter. */
    static ApiError invalid(String param, String message) {
        return new ApiError(400, "invalid_request_error", message, param, null);
    }

    /** 400 for a parameter of the wrong JSON type. */
    static ApiError wrongType(String param, String expected, Object got) {
        return invalid(param, "Invalid type for '" + param + "': expected " + expected + ", but got " + jsonType(got) + " instead.");
    }

    /** 400 for a parameter the server does not support with this value. */
    static ApiError unsupported(String param, String message) {
        return new ApiError(400, "invalid_request_error", message, param, "unsupported_parameter");
    }

    /** 404 for a model this server does not serve. */
    static ApiError modelNotFound(String model) {
        return new ApiError(404, "invalid_request_error",
                "The model `" + model + "` does not exist or you do not have access to it.", "model", "model_not_found");
    }

    static String jsonType(Object v) {
        if (v == null) return "null";
        if (v instanceof String) return "a string";
        if (v instanceof Boolean) return "a boolean";
        if (v instanceof Number) return "a number";
        if (v instanceof JsonObject || v instanceof java.util.Map) return "an object";
        return "an array";
    }

    /** The OpenAI error body. */
    JsonObject toJson() {
        return new JsonObject().put("error", new JsonObject().put("message", getMessage()).put("type", type)
                .put("param", param).put("code", code));
    }

    /**
     * The OpenAI error for a failure of the server or of this layer: INVALID_ARGUMENT 400, UNAUTHENTICATED 401,
     * PERMISSION_DENIED 403, NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNIMPLEMENTED 501, UNAVAILABLE 503,
     * DEADLINE_EXCEEDED 504, anything else 500.
     */
    static ApiError from(Throwable t) {
        while (t instanceof java.util.concurrent.CompletionException && t.getCause() != null) t = t.getCause();
        if (t instanceof ApiError a) return a;
        if (!(t instanceof LightMeshException e)) {
            return new ApiError(500, "server_error", "Internal error: " + t, null, null);
        }
        String m = e.description().isEmpty() ? e.code().toString() : e.description();
        Status.Code c = e.code();
        return switch (c) {
            case INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE -> new ApiError(400, "invalid_request_error", m, null, null);
            case UNAUTHENTICATED -> new ApiError(401, "invalid_request_error", m, null, "invalid_api_key");
            case PERMISSION_DENIED -> new ApiError(403, "invalid_request_error", m, null, "permission_denied");
            case NOT_FOUND -> new ApiError(404, "invalid_request_error", m, null, "not_found");
            case RESOURCE_EXHAUSTED -> new ApiError(429, "rate_limit_error", "The server is busy: " + m, null, "rate_limit_exceeded");
            case UNIMPLEMENTED -> new ApiError(501, "server_error", m, null, "not_implemented");
            case UNAVAILABLE -> new ApiError(503, "server_error", "The server is unavailable: " + m, null, "service_unavailable");
            case DEADLINE_EXCEEDED -> new ApiError(504, "server_error", "The request timed out: " + m, null, "timeout");
            case CANCELLED -> new ApiError(499, "invalid_request_error", m, null, "cancelled");
            default -> new ApiError(500, "server_error", m, null, null);
        };
    }
}
