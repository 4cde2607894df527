package io.lightmesh.client;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * A token's log-probability (natural log) and the most likely tokens at its position, from the model's raw logits
 * (before penalties, temperature, top-k and top-p, as vLLM reports them by default).
 *
 * @param tokenId     the token
 * @param token       its text ({@code ""} when the server has no tokenizer)
 * @param bytes       its bytes as the tokenizer decodes them (a character split across tokens is split here too)
 * @param logprob     its log-probability
 * @param topLogprobs the most likely tokens at this position, most likely first (empty in those entries themselves)
 */
public record TokenLogprob(int tokenId, String token, byte[] bytes, double logprob, List<TokenLogprob> topLogprobs) {
    public TokenLogprob {
        token = Objects.requireNonNullElse(token, "");
        bytes = bytes == null ? new byte[0] : bytes.clone();
        topLogprobs = topLogprobs == null ? List.of() : List.copyOf(topLogprobs);
    }

    /** A copy of the bytes. */
    @Override public byte[] bytes() { return bytes.clone(); }

    @Override public boolean equals(Object o) {
        return o instanceof TokenLogprob t && t.tokenId == tokenId && t.token.equals(token) && Arrays.equals(t.bytes, bytes)
                && Double.compare(t.logprob, logprob) == 0 && t.topLogprobs.equals(topLogprobs);
    }

    @Override public int hashCode() { return Objects.hash(tokenId, token, Arrays.hashCode(bytes), logprob, topLogprobs); }

    @Override public String toString() { return "TokenLogprob[" + tokenId + " '" + token + "' " + logprob + ", top " + topLogprobs + "]"; }
}
