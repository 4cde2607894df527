package io.lightmesh.engine.model;

import java.util.ArrayList;
import java.util.List;

/**
 * The rows of one forward step and the sequences they belong to: each segment is {@code count} consecutive tokens
 * of one sequence, starting at that sequence's current position. Prefill is one segment of n rows; a
 * continuous-batching decode step is B segments of one row each. Mixed batches are allowed.
 */
record Batch(List<Segment> segments, int rows) {

    record Segment(SequenceState state, int row, int count) {}

    static Batch prefill(SequenceState s, int n) {
        return new Batch(List.of(new Segment(s, 0, n)), n);
    }

    static Batch decode(List<SequenceState> states) {
        List<Segment> segs = new ArrayList<>(states.size());
        for (int i = 0; i < states.size(); i++) segs.add(new Segment(states.get(i), i, 1));
        return new Batch(segs, states.size());
    }

    boolean allSingleTokens() {
        for (Segment s : segments) if (s.count != 1) return false;
        return true;
    }
}
