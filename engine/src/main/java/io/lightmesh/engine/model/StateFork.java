package io.lightmesh.engine.model;

import io.lightmesh.engine.config.ModelConfig;

/**
 * Copies a sequence's state, for several continuations of one prefill (a request's {@code n} choices): the copy
 * holds the same lightning states, KV rows and position on the host and shares nothing with the original, so each
 * can be decoded on its own. A device copy that is ahead is downloaded first; the fork starts on the host.
 */
public final class StateFork {
    private StateFork() {}

    /** A deep copy of {@code s}; its KV caches have room for {@code kvCapacity} tokens (at least its position). */
    public static SequenceState copy(SequenceState s, int kvCapacity) {
        ModelConfig c = s.config();
        int position = s.position();
        SequenceState out = new SequenceState(c, Math.max(kvCapacity, position));
        for (int l = 0; l < c.numLayers(); l++) {
            if (c.isSoftmax(l)) {
                KvCache from = s.kvCacheForReading(l);
                out.kvCache(l).append(from.keys(), from.values(), from.length());
            } else {
                float[] from = s.lightningStateForReading(l);
                System.arraycopy(from, 0, out.lightningState(l), 0, from.length);
            }
        }
        out.advance(position);
        return out;
    }

    /** A deep copy of {@code s} with room for 256 more tokens of KV before its caches grow. */
    public static SequenceState copy(SequenceState s) { return copy(s, s.position() + 256); }
}
