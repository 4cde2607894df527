package io.lightmesh.router.placement;

import io.lightmesh.proto.v1.ExpertShardInfo;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.Map;

/**
 * The shards' cumulative counters (Worker.Describe's ExpertShardInfo) over a sliding window, turned into rates:
 * tokens per second per (layer, expert), per shard, and each shard's measured capacity (tokens per second of
 * compute). A shard's rate is (newest - oldest reading in the window) / their time apart; a counter that went back
 * (the shard restarted) starts the shard's history again. Not thread-safe: the controller's thread owns it.
 */
final class LoadWindow {
    private record Reading(long atMs, long[] tokens, long computeUs, long tokensComputed) {}

    private final long windowMs;
    private final int pairs;
    private final Map<String, Deque<Reading>> byShard = new HashMap<>();

    LoadWindow(long windowMs, int numLayers, int numExperts) {
        this.windowMs = windowMs;
        this.pairs = numLayers * numExperts;
    }

    void add(String shard, long atMs, ExpertShardInfo info) {
        long[] t = new long[pairs];
        for (int i = 0; i < Math.min(pairs, info.getTokensCount()); i++) t[i] = info.getTokens(i);
        Deque<Reading> d = byShard.computeIfAbsent(shard, k -> new ArrayDeque<>());
        Reading last = d.peekLast();
        if (last != null && (info.getTokensComputed() < last.tokensComputed || info.getComputeUs() < last.computeUs)) d.clear();
        d.addLast(new Reading(atMs, t, info.getComputeUs(), info.getTokensComputed()));
        // keep one reading at or before the window's start, so the window is covered whole
        while (d.size() > 2) {
            java.util.Iterator<Reading> it = d.iterator();
            it.next();
            if (it.next().atMs <= atMs - windowMs) d.removeFirst();
            else break;
        }
    }

    /** Forgets a shard (dropped from the mesh): its traffic now goes elsewhere, so its past rate would count twice. */
    void forget(String shard) { byShard.remove(shard); }

    /** Tokens/s per (layer * E + expert), summed over the shards. */
    double[] expertRates() {
        double[] out = new double[pairs];
        for (Deque<Reading> d : byShard.values()) {
            if (d.size() < 2) continue;
            Reading a = d.peekFirst(), b = d.peekLast();
            double s = (b.atMs - a.atMs) / 1000.0;
            for (int i = 0; i < pairs; i++) out[i] += (b.tokens[i] - a.tokens[i]) / s;
        }
        return out;
    }

    /** Tokens/s the shard computed over the window (all its pairs); 0 before two readings. */
    double shardRate(String shard) {
        Deque<Reading> d = byShard.get(shard);
        if (d == null || d.size() < 2) return 0;
        Reading a = d.peekFirst(), b = d.peekLast();
        return (b.tokensComputed - a.tokensComputed) / ((b.atMs - a.atMs) / 1000.0);
    }

    /**
     * Tokens a shard computes per second of compute, over the window; NaN when it computed nothing (no
     * measurement). Its capacity when it is busy all the time.
     */
    double capacity(String shard) {
        Deque<Reading> d = byShard.get(shard);
        if (d == null || d.size() < 2) return Double.NaN;
        Reading a = d.peekFirst(), b = d.peekLast();
        long us = b.computeUs - a.computeUs, tok = b.tokensComputed - a.tokensComputed;
        return us <= 0 || tok <= 0 ? Double.NaN : tok / (us / 1e6);
    }

    /** Seconds covered by the shard readings (the longest); 0 before two readings. */
    double coveredSeconds() {
        double s = 0;
        for (Deque<Reading> d : byShard.values()) if (d.size() >= 2) s = Math.max(s, (d.peekLast().atMs - d.peekFirst().atMs) / 1000.0);
        return s;
    }
}
