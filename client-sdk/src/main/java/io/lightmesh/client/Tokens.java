package io.lightmesh.client;

import java.util.List;

/**
 * Text as the model sees it.
 *
 * @param ids    the token ids, in order
 * @param pieces the text of each token (bytes that are not whole UTF-8 characters shown as U+FFFD)
 */
public record Tokens(List<Integer> ids, List<String> pieces) {
    /** Copies the lists. */
    public Tokens {
        ids = List.copyOf(ids);
        pieces = List.copyOf(pieces);
    }

    /** Number of tokens. */
    public int count() { return ids.size(); }
}
