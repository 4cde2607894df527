package io.lightmesh.engine.generate;

import java.util.BitSet;
import java.util.HashMap;
import java.util.Map;
import java.util.function.IntConsumer;

/** The tokens a sequence has seen, as the penalties need them: the prompt's distinct tokens and the output's counts. */
public final class TokenHistory {
    private final BitSet seen = new BitSet();
    private final Map<Integer, Integer> output = new HashMap<>();

    public TokenHistory(int[] prompt) {
        for (int t : prompt) if (t >= 0) seen.set(t);
    }

    /** Records one generated token. */
    public void add(int token) {
        if (token < 0) return;
        seen.set(token);
        output.merge(token, 1, Integer::sum);
    }

    /** Each distinct token of the prompt or the output, once. */
    public void forEachSeen(IntConsumer c) {
        for (int t = seen.nextSetBit(0); t >= 0; t = seen.nextSetBit(t + 1)) c.accept(t);
    }

    /** Token -> times it occurs in the output. Read-only view. */
    public Map<Integer, Integer> outputCounts() { return java.util.Collections.unmodifiableMap(output); }
}
