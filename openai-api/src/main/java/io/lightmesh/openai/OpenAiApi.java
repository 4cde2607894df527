package io.lightmesh.openai;

import io.lightmesh.client.Completion;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.client.ModelInfo;
import io.vertx.core.Context;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.handler.BodyHandler;

import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.regex.Pattern;

/**
 * OpenAI's HTTP API in front of a LightMesh server, as Vert.x Web routes: {@code POST /v1/chat/completions},
 * {@code POST /v1/completions}, {@code GET /v1/models}, {@code GET /v1/models/{id}}. Requests are validated here
 * (an invalid body is answered 400 and never reaches the server) and translated into calls of the
 * {@link LightMeshClient}; errors come back in OpenAI's shape with the matching HTTP status.
 *
 * <pre>{@code
 * Router router = Router.router(vertx);
 * OpenAiApi.mount(router, LightMeshClient.builder().target("localhost:9000").build());
 * vertx.createHttpServer().requestHandler(router).listen(8080);
 * }</pre>
 *
 * Besides OpenAI's parameters, the chat and text endpoints take {@code max_thinking_tokens} (a number) or
 * {@code thinking_budget} ({@code "40k"}, {@code "80k"}: MiniMax-M1's presets, or a number): the reasoning is cut
 * there and the model made to answer. Handlers never block the event loop.
 */
public final class OpenAiApi {
    private static final Pattern REQUEST_ID = Pattern.compile("[A-Za-z0-9._:-]{1,128}");
    private static final Set<String> PATHS = Set.of("/v1/chat/completions", "/v1/completions", "/v1/models");

    private final LightMeshClient client;
    private final OpenAiOptions options;
    private final long created = Instant.now().getEpochSecond();
    private volatile CompletableFuture<ModelInfo> model;
    private volatile long modelFetchedAt;

    private OpenAiApi(LightMeshClient client, OpenAiOptions options) {
        this.client = client;
        this.options = options;
    }

    /** Mounts the API with default options. */
    public static void mount(Router router, LightMeshClient client) { mount(router, client, OpenAiOptions.defaults()); }

    /** Mounts the API on {@code router}, talking to the server through {@code client} (not closed by this API). */
    public static void mount(Router router, LightMeshClient client, OpenAiOptions options) {
        new OpenAiApi(client, options).routes(router);
    }

    private void routes(Router router) {
        router.route("/v1/*").failureHandler(this::failure);
        if (options.apiKey() != null) router.route("/v1/*").handler(this::authenticate);
        BodyHandler body = BodyHandler.create(false).setBodyLimit(options.maxBodyBytes());
        router.post("/v1/chat/completions").handler(body).handler(this::chat);
        router.post("/v1/completions").handler(body).handler(this::completions);
        router.get("/v1/models").handler(this::models);
        router.get("/v1/models/:model").handler(this::oneModel);
        router.route("/v1/*").last().handler(ctx -> {
            String path = ctx.normalizedPath();
            boolean known = PATHS.contains(path) || path.startsWith("/v1/models/");
            sendError(ctx, known
                    ? new ApiError(405, "invalid_request_error", "Method " + ctx.request().method() + " is not allowed on " + path + ".", null, "method_not_allowed")
                    : new ApiError(404, "invalid_request_error", "Unknown request URL: " + ctx.request().method() + " " + path + ".", null, "unknown_url"));
        });
    }

    // ---- endpoints ----

    private void chat(RoutingContext ctx) {
        String requestId = requestId(ctx);
        ChatCompletions.Call call;
        try {
            call = ChatCompletions.parse(json(ctx), requestId);
        } catch (ApiError e) {
            sendError(ctx, e);
            return;
        }
        serve(ctx, requestId, call.model(), call.stream(), call.request(), now -> new ChatCompletions.Chunker(call, now),
                (c, now) -> ChatCompletions.completion(call, c, now));
    }

    private void completions(RoutingContext ctx) {
        String requestId = requestId(ctx);
        TextCompletions.Call call;
        try {
            call = TextCompletions.parse(json(ctx), requestId, options.defaultCompletionMaxTokens());
        } catch (ApiError e) {
            sendError(ctx, e);
            return;
        }
        serve(ctx, requestId, call.model(), call.stream(), call.request(), now -> new TextCompletions.Chunker(call, now),
                (c, now) -> TextCompletions.completion(call, c, now));
    }

    /**
     * Answers a parsed call once its model is known to be served: streamed as server-sent events in {@code chunks}'
     * format, or whole as {@code whole} renders the completion; both stamped with the same creation second.
     */
    private void serve(RoutingContext ctx, String requestId, String model, boolean stream, io.lightmesh.client.GenerationRequest request,
                       java.util.function.LongFunction<SseResponse.Format> chunks, java.util.function.BiFunction<Completion, Long, JsonObject> whole) {
        whenModelServed(ctx, model, () -> {
            long now = Instant.now().getEpochSecond();
            if (stream) {
                client.publisher(request).subscribe(new SseResponse(ctx, chunks.apply(now), requestId));
            } else {
                answer(ctx, client.generateAsync(request), c -> whole.apply(c, now), requestId);
            }
        });
    }

    private void models(RoutingContext ctx) {
        Context context = ctx.vertx().getOrCreateContext();
        model().whenComplete((info, err) -> context.runOnContext(v -> {
            if (err != null) {
                sendError(ctx, ApiError.from(err));
                return;
            }
            JsonArray data = new JsonArray();
            for (String id : names(info)) data.add(modelJson(id));
            sendJson(ctx, 200, new JsonObject().put("object", "list").put("data", data), null);
        }));
    }

    private void oneModel(RoutingContext ctx) {
        String id = ctx.pathParam("model");
        Context context = ctx.vertx().getOrCreateContext();
        model().whenComplete((info, err) -> context.runOnContext(v -> {
            if (err != null) sendError(ctx, ApiError.from(err));
            else if (!names(info).contains(id)) sendError(ctx, ApiError.modelNotFound(id));
            else sendJson(ctx, 200, modelJson(id), null);
        }));
    }

    private JsonObject modelJson(String id) {
        return new JsonObject().put("id", id).put("object", "model").put("created", created).put("owned_by", "lightmesh");
    }

    // ---- plumbing ----

    /** Sends a whole answer; the client closing the connection first cancels the generation on the server. */
    private void answer(RoutingContext ctx, CompletableFuture<Completion> f, java.util.function.Function<Completion, JsonObject> render,
                        String requestId) {
        Context context = ctx.vertx().getOrCreateContext();
        ctx.response().closeHandler(v -> f.cancel(true));
        f.whenComplete((c, err) -> context.runOnContext(v -> {
            if (err != null) sendError(ctx, ApiError.from(err));
            else sendJson(ctx, 200, render.apply(c), requestId);
        }));
    }

    /** Runs {@code then} on the event loop once the model name is known to be served; else answers 404 (or the lookup's error). */
    private void whenModelServed(RoutingContext ctx, String name, Runnable then) {
        if (options.acceptAnyModel()) {
            then.run();
            return;
        }
        Context context = ctx.vertx().getOrCreateContext();
        model().whenComplete((info, err) -> context.runOnContext(v -> {
            if (err != null) sendError(ctx, ApiError.from(err));
            else if (!names(info).contains(name)) sendError(ctx, ApiError.modelNotFound(name));
            else then.run();
        }));
    }

    private List<String> names(ModelInfo info) {
        List<String> names = new ArrayList<>();
        names.add(info.modelId());
        for (String a : options.modelAliases()) if (!names.contains(a)) names.add(a);
        return names;
    }

    /** The served model, asked of the server at most once a minute (again at once after a failure). */
    private CompletableFuture<ModelInfo> model() {
        CompletableFuture<ModelInfo> m = model;
        long now = System.nanoTime();
        if (m != null && (!m.isDone() || (!m.isCompletedExceptionally() && now - modelFetchedAt < 60_000_000_000L))) return m;
        m = client.modelInfoAsync();
        model = m;
        modelFetchedAt = now;
        return m;
    }

    private void authenticate(RoutingContext ctx) {
        String auth = ctx.request().getHeader("Authorization");
        if (("Bearer " + options.apiKey()).equals(auth)) {
            ctx.next();
            return;
        }
        sendError(ctx, new ApiError(401, "invalid_request_error",
                auth == null ? "You didn't provide an API key: send it as 'Authorization: Bearer <key>'." : "Incorrect API key provided.",
                null, "invalid_api_key"));
    }

    private static String requestId(RoutingContext ctx) {
        String h = ctx.request().getHeader("x-request-id");
        return h != null && REQUEST_ID.matcher(h).matches() ? h : UUID.randomUUID().toString().replace("-", "");
    }

    private static JsonObject json(RoutingContext ctx) {
        JsonObject body;
        try {
            body = ctx.body().asJsonObject();
        } catch (RuntimeException e) {
            body = null;
        }
        if (body == null) {
            throw ApiError.invalid(null, "We could not parse the JSON body of your request: expected a JSON object.");
        }
        return body;
    }

    /** Turns failures of the routes (a body over the limit, a handler's exception) into OpenAI errors. */
    private void failure(RoutingContext ctx) {
        int status = ctx.statusCode();
        if (ctx.failure() != null) sendError(ctx, ApiError.from(ctx.failure()));
        else if (status == 413) sendError(ctx, new ApiError(413, "invalid_request_error",
                "The request body is larger than " + options.maxBodyBytes() + " bytes.", null, "request_too_large"));
        else if (status >= 400 && status < 500) sendError(ctx, new ApiError(status, "invalid_request_error", "Bad request.", null, null));
        else sendError(ctx, new ApiError(500, "server_error", "Internal error.", null, null));
    }

    static void sendError(RoutingContext ctx, ApiError e) {
        HttpServerResponse r = ctx.response();
        if (r.ended() || r.closed() || r.headWritten()) return;
        if (e.status == 429 || e.status == 503) r.putHeader("Retry-After", "1");
        sendJson(ctx, e.status, e.toJson(), null);
    }

    static void sendJson(RoutingContext ctx, int status, JsonObject body, String requestId) {
        HttpServerResponse r = ctx.response();
        if (r.ended() || r.closed()) return;
        r.setStatusCode(status).putHeader("Content-Type", "application/json");
        if (requestId != null) r.putHeader("x-request-id", requestId);
        r.end(body.encode());
    }

}
