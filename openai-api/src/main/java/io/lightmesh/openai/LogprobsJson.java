package io.lightmesh.openai;

import io.lightmesh.client.TokenLogprob;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.util.List;

/**
 * OpenAI's two shapes of log-probabilities: the chat one ({@code {"content": [{"token", "logprob", "bytes",
 * "top_logprobs"}]}}) and the legacy completions one ({@code tokens}, {@code token_logprobs}, {@code top_logprobs}
 * as {token: logprob} maps, {@code text_offset}). The numbers are the server's raw-logit log-probabilities.
 */
final class LogprobsJson {
    private LogprobsJson() {}

    private static JsonArray bytes(TokenLogprob t) {
        JsonArray a = new JsonArray();
        for (byte b : t.bytes()) a.add(b & 0xff);
        return a;
    }

    private static JsonObject entry(TokenLogprob t) {
        return new JsonObject().put("token", t.token()).put("logprob", t.logprob()).put("bytes", bytes(t));
    }

    /** The chat form: {@code {"content": [...], "refusal": null}}, one entry per token. */
    static JsonObject chat(List<TokenLogprob> lps) {
        JsonArray content = new JsonArray();
        for (TokenLogprob t : lps) {
            JsonArray top = new JsonArray();
            for (TokenLogprob alt : t.topLogprobs()) top.add(entry(alt));
            content.add(entry(t).put("top_logprobs", top));
        }
        return new JsonObject().put("content", content).put("refusal", null);
    }

    /** The legacy completions form, accumulated token by token. */
    static final class Legacy {
        private final JsonArray tokens = new JsonArray(), tokenLogprobs = new JsonArray(), top = new JsonArray(), offsets = new JsonArray();
        private int offset;

        /** @param offset where the text these tokens belong to starts in the choice's text */
        Legacy(int offset) { this.offset = offset; }

        /** A token nothing predicts (the prompt's first, with echo): null log-probability and alternatives. */
        Legacy unscored(String token) {
            tokens.add(token);
            tokenLogprobs.addNull();
            top.addNull();
            offsets.add(offset);
            offset += token.length();
            return this;
        }

        Legacy add(TokenLogprob t) {
            tokens.add(t.token());
            tokenLogprobs.add(t.logprob());
            JsonObject alts = new JsonObject();
            for (TokenLogprob alt : t.topLogprobs()) if (!alts.containsKey(alt.token())) alts.put(alt.token(), alt.logprob());
            top.add(alts);
            offsets.add(offset);
            offset += t.token().length();
            return this;
        }

        Legacy addAll(List<TokenLogprob> lps) {
            for (TokenLogprob t : lps) add(t);
            return this;
        }

        boolean isEmpty() { return tokens.isEmpty(); }

        JsonObject json() {
            return new JsonObject().put("tokens", tokens.copy()).put("token_logprobs", tokenLogprobs.copy())
                    .put("top_logprobs", top.copy()).put("text_offset", offsets.copy());
        }
    }
}
