package io.lightmesh.router;

import com.google.protobuf.ByteString;
import io.lightmesh.engine.tokenizer.Tokenizer;
import io.lightmesh.proto.v1.TokenLogprob;

/**
 * Adds the text and bytes of each token to the log-probabilities the workers send (ids and numbers only), so that
 * clients without the tokenizer (the OpenAI API, the SDK) can show them. A model without a tokenizer leaves them
 * empty.
 */
final class LogprobText {
    private final Tokenizer tokenizer; // null: ids only

    LogprobText(Tokenizer tokenizer) { this.tokenizer = tokenizer; }

    TokenLogprob describe(TokenLogprob lp) {
        if (tokenizer == null) return lp;
        TokenLogprob.Builder b = lp.toBuilder();
        name(b);
        for (int i = 0; i < b.getTopLogprobsCount(); i++) name(b.getTopLogprobsBuilder(i));
        return b.build();
    }

    private void name(TokenLogprob.Builder b) {
        int id = b.getTokenId();
        b.setToken(tokenizer.decode(new int[]{id})).setBytes(ByteString.copyFrom(tokenizer.bytesOf(id)));
    }
}
