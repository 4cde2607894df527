package io.lightmesh.openai;

import io.lightmesh.client.Delta;
import io.vertx.core.Context;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.RoutingContext;

import java.util.List;
import java.util.concurrent.Flow;

/**
 * Writes a stream of deltas as server-sent events: {@code data: {chunk}\n\n} per chunk, then {@code data: [DONE]}.
 *
 * <p>The status line is held back until the first delta arrives, so that a request refused before generation starts
 * (queue full, no worker, bad request) still gets its proper HTTP status and error body. A failure after that is
 * sent as a {@code data: {"error": ...}} event (which OpenAI's clients raise), and the response ends. One delta is
 * asked for at a time, and none while the connection's write queue is full: a slow reader slows the generation
 * instead of filling memory. The client closing the connection cancels the generation on the server.
 */
final class SseResponse implements Flow.Subscriber<Delta> {
    /** The chunks to send: at the start, and for each delta. */
    interface Format {
        List<JsonObject> start();

        List<JsonObject> delta(Delta d);
    }

    private final RoutingContext ctx;
    private final Context context;    // the request's event loop: every write happens there, in order
    private final Format format;
    private final String requestId;
    private Flow.Subscription subscription;
    private boolean started;
    private boolean finished;

    SseResponse(RoutingContext ctx, Format format, String requestId) {
        this.ctx = ctx;
        this.context = ctx.vertx().getOrCreateContext();
        this.format = format;
        this.requestId = requestId;
    }

    @Override
    public void onSubscribe(Flow.Subscription s) {
        context.runOnContext(v -> {
            subscription = s;
            HttpServerResponse r = ctx.response();
            if (r.closed()) {
                s.cancel();
                return;
            }
            r.closeHandler(x -> {
                if (!finished) {
                    finished = true;
                    s.cancel();
                }
            });
            s.request(1);
        });
    }

    @Override
    public void onNext(Delta d) {
        context.runOnContext(v -> {
            if (finished) return;
            HttpServerResponse r = ctx.response();
            if (!started) {
                started = true;
                r.setStatusCode(200).setChunked(true)
                        .putHeader("Content-Type", "text/event-stream; charset=utf-8")
                        .putHeader("Cache-Control", "no-cache")
                        .putHeader("X-Accel-Buffering", "no")
                        .putHeader("x-request-id", requestId);
                for (JsonObject c : format.start()) write(c);
            }
            for (JsonObject c : format.delta(d)) write(c);
            if (r.writeQueueFull()) r.drainHandler(x -> { if (!finished) subscription.request(1); });
            else subscription.request(1);
        });
    }

    private void write(JsonObject chunk) { ctx.response().write("data: " + chunk.encode() + "\n\n"); }

    @Override
    public void onError(Throwable t) {
        context.runOnContext(v -> {
            if (finished) return;
            finished = true;
            ApiError e = ApiError.from(t);
            if (!started) {
                OpenAiApi.sendError(ctx, e);
                return;
            }
            ctx.response().write("data: " + e.toJson().encode() + "\n\n");
            ctx.response().end();
        });
    }

    @Override
    public void onComplete() {
        context.runOnContext(v -> {
            if (finished) return;
            finished = true;
            HttpServerResponse r = ctx.response();
            if (!started) {
                r.setStatusCode(200).setChunked(true).putHeader("Content-Type", "text/event-stream; charset=utf-8");
                for (JsonObject c : format.start()) write(c);
            }
            r.end("data: [DONE]\n\n");
        });
    }
}
