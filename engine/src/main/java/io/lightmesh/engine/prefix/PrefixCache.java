package io.lightmesh.engine.prefix;

import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateSnapshots;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;

/**
 * Snapshots of sequence states keyed by their token prefix, shared by every request of a worker: a radix tree whose
 * edges are runs of tokens, each edge holding the KV rows of its tokens for every softmax layer, and whose nodes may
 * hold a snapshot of every lightning state after the node's prefix. A snapshot at depth L is thus the lightning
 * states stored at its node plus the KV rows of the edges from the root down to it: the KV rows of a shared prefix
 * are stored once, whatever the number of snapshots below it.
 *
 * <p>Bytes counted: every edge's KV rows and tokens, every snapshot's lightning states, and a fixed estimate per node.
 * When a store would go over the budget, the least recently used snapshots are dropped first (a snapshot is used when
 * stored, the longest of a store last, and when a lookup restores it); an edge goes when no snapshot is left at or
 * below it, so dropping a snapshot above others frees only its lightning states. A store whose longest snapshot could
 * not fit in the whole budget is skipped.
 *
 * <p>Thread-safe (one lock). A {@link Hit} keeps references to the arrays it restores from, which are never changed
 * in place (a split copies), so {@link Hit#restore} runs outside the lock, even if the snapshot is dropped meanwhile.
 */
public final class PrefixCache {
    /** Default budget: 1 GiB, or a quarter of the heap when that is less. */
    public static long defaultBytes() { return Math.min(1L << 30, Runtime.getRuntime().maxMemory() / 4); }

    /** Estimated bytes of a node beyond its arrays: object headers, array headers, the parent's map entry. */
    static final long NODE_OVERHEAD = 160;

    private final ModelConfig config;
    private final long budget;
    private final int kvd;
    private final int[] softmax;        // the softmax layers' indices
    private final long lightningBytes;  // of one snapshot
    private final Node root = new Node(null, new int[0], 0);
    /** Nodes holding a snapshot, least recently used first. */
    private final LinkedHashMap<Node, Node> lru = new LinkedHashMap<>(16, 0.75f, true);
    private long bytes;
    private long lookups, hits, promptTokens, cachedTokens, evictions, skipped;

    private static final class Node {
        Node parent;
        int[] tokens;        // the edge from the parent
        int depth;           // tokens from the root to the end of this edge
        float[][] keys;      // [softmax layer index] -> [tokens.length, KV*D], never changed in place
        float[][] values;
        float[][] lightning; // the snapshot after depth tokens: [layer] -> [H, D, D], or null
        final Map<Integer, Node> children = new HashMap<>();

        Node(Node parent, int[] tokens, int depth) {
            this.parent = parent;
            this.tokens = tokens;
            this.depth = depth;
        }
    }

    /** What the cache holds and has done, for metrics and tests. */
    public record Stats(long lookups, long hits, long promptTokens, long cachedTokens, long bytes, long budget,
                        int snapshots, long evictions, long skipped) {
        /** Lookups that found a snapshot. */
        public double hitRate() { return lookups == 0 ? 0 : (double) hits / lookups; }
    }

    /** A cache for states of {@code config}'s shape holding at most {@code budgetBytes}. */
    public PrefixCache(ModelConfig config, long budgetBytes) {
        if (budgetBytes < 0) throw new IllegalArgumentException("prefix cache budget must be >= 0, got " + budgetBytes);
        this.config = config;
        this.budget = budgetBytes;
        this.kvd = config.kvDim();
        this.softmax = java.util.stream.IntStream.range(0, config.numLayers()).filter(config::isSoftmax).toArray();
        long lb = 0;
        for (int l = 0; l < config.numLayers(); l++) if (!config.isSoftmax(l)) lb += (long) config.numHeads() * config.headDim() * config.headDim() * Float.BYTES;
        this.lightningBytes = lb;
    }

    public ModelConfig config() { return config; }

    /** Bytes of one snapshot's lightning states (fixed per model). */
    public long snapshotBytes() { return lightningBytes; }

    /** Bytes of one token's KV rows over every softmax layer, plus the token id. */
    public long tokenBytes() { return 2L * softmax.length * kvd * Float.BYTES + Integer.BYTES; }

    /** A snapshot found by {@link #lookup}: its length and what rebuilds the state. */
    public static final class Hit {
        private final ModelConfig config;
        private final int tokens;
        private final float[][] lightning;
        private final List<float[][]> edges; // per edge from the root: {keys[softmax index], values[softmax index]} flattened

        private Hit(ModelConfig config, int tokens, float[][] lightning, List<float[][]> edges) {
            this.config = config;
            this.tokens = tokens;
            this.lightning = lightning;
            this.edges = edges;
        }

        /** Tokens of the prefix the snapshot holds. */
        public int tokens() { return tokens; }

        /** A fresh host state after the prefix, with room for {@code spareRows} more KV rows. */
        public SequenceState restore(int spareRows) {
            int[] softmaxIndex = new int[config.numLayers()];
            for (int l = 0, i = 0; l < softmaxIndex.length; l++) softmaxIndex[l] = config.isSoftmax(l) ? i++ : -1;
            return StateSnapshots.restore(config, tokens, lightning, (layer, cache) -> {
                int i = softmaxIndex[layer];
                for (float[][] e : edges) {
                    int n = e[2 * i].length / cache.rowWidth();
                    if (n > 0) cache.append(e[2 * i], e[2 * i + 1], n);
                }
            }, spareRows);
        }
    }

    /**
     * The longest snapshot whose prefix is {@code tokens[0..k)} with {@code k <= maxLength}, or null. A hit is marked
     * used (the snapshots above it on the path are not: only their KV rows are read).
     */
    public synchronized Hit lookup(int[] tokens, int maxLength) {
        maxLength = Math.min(maxLength, tokens.length);
        lookups++;
        promptTokens += tokens.length;
        List<Node> path = new ArrayList<>();
        Node n = root, best = null;
        while (n.depth < maxLength) {
            Node c = n.children.get(tokens[n.depth]);
            if (c == null || c.depth > maxLength || !matches(c, tokens)) break;
            path.add(c);
            if (c.lightning != null) best = c;
            n = c;
        }
        if (best == null) return null;
        hits++;
        cachedTokens += best.depth;
        List<float[][]> edges = new ArrayList<>();
        for (Node p : path) {
            if (p.depth > best.depth) break;
            float[][] e = new float[2 * softmax.length][];
            for (int i = 0; i < softmax.length; i++) {
                e[2 * i] = p.keys[i];
                e[2 * i + 1] = p.values[i];
            }
            edges.add(e);
        }
        lru.get(best);
        return new Hit(config, best.depth, best.lightning, edges);
    }

    /** Whether c's edge equals tokens at c's place. */
    private static boolean matches(Node c, int[] tokens) {
        int from = c.depth - c.tokens.length;
        return Arrays.equals(c.tokens, 0, c.tokens.length, tokens, from, c.depth);
    }

    /**
     * Stores snapshots of {@code tokens}' prefixes: {@code lightning} maps a prefix length to the lightning states
     * after it ({@link StateSnapshots#lightning}); {@code state} holds at least the longest of them, and its KV rows
     * are copied for the tokens the tree lacks. Snapshots already held are only marked used.
     *
     * @return whether the snapshots were stored (false: they could not fit in the whole budget)
     */
    public synchronized boolean store(int[] tokens, SequenceState state, NavigableMap<Integer, float[][]> lightning) {
        if (lightning.isEmpty()) return true;
        int end = lightning.lastKey();
        if (lightning.firstKey() < 1 || end > tokens.length || end > state.position()) {
            throw new IllegalArgumentException("snapshots at " + lightning.keySet() + " for " + tokens.length + " tokens, state at " + state.position());
        }
        // the longest snapshot alone must fit (with its new rows, its node and one split); the shorter ones may be dropped
        long need = (long) (end - matchedDepth(tokens, end)) * tokenBytes() + lightningBytes + 2 * NODE_OVERHEAD;
        if (need > budget) {
            skipped++;
            return false;
        }
        List<Node> touched = new ArrayList<>();
        for (Map.Entry<Integer, float[][]> e : lightning.entrySet()) {
            Node n = nodeAt(tokens, e.getKey(), state);
            if (n.lightning == null) {
                n.lightning = e.getValue();
                bytes += lightningBytes;
            }
            touched.add(n);
        }
        for (Node n : touched) lru.put(n, n); // the longest is the most recent: the next turn of a chat starts from it
        while (bytes > budget && !lru.isEmpty()) evictEldest();
        return true;
    }

    /** Tokens of {@code tokens[0..limit)} the tree already holds as edges. */
    private int matchedDepth(int[] tokens, int limit) {
        Node n = root;
        while (n.depth < limit) {
            Node c = n.children.get(tokens[n.depth]);
            if (c == null) return n.depth;
            int common = common(c, tokens, limit);
            if (common < c.tokens.length) return c.depth - c.tokens.length + common;
            n = c;
        }
        return Math.min(n.depth, limit);
    }

    /** Tokens of c's edge equal to tokens at c's place, up to position limit. */
    private static int common(Node c, int[] tokens, int limit) {
        int from = c.depth - c.tokens.length, k = 0;
        while (k < c.tokens.length && from + k < limit && c.tokens[k] == tokens[from + k]) k++;
        return k;
    }

    /** The node at depth {@code p} on {@code tokens}' path, made (splitting an edge, or a new edge from the state) if missing. */
    private Node nodeAt(int[] tokens, int p, SequenceState state) {
        Node n = root;
        while (n.depth < p) {
            Node c = n.children.get(tokens[n.depth]);
            if (c == null) return addEdge(n, tokens, p, state);
            int common = common(c, tokens, p);
            if (common < c.tokens.length) c = split(c, common);
            n = c;
        }
        return n;
    }

    /** A new child of {@code parent} for tokens[parent.depth..p), its KV rows copied from the state. */
    private Node addEdge(Node parent, int[] tokens, int p, SequenceState state) {
        int from = parent.depth;
        Node c = new Node(parent, Arrays.copyOfRange(tokens, from, p), p);
        c.keys = new float[softmax.length][];
        c.values = new float[softmax.length][];
        for (int i = 0; i < softmax.length; i++) {
            float[][] kv = StateSnapshots.kvRows(state, softmax[i], from, p - from);
            c.keys[i] = kv[0];
            c.values[i] = kv[1];
        }
        parent.children.put(c.tokens[0], c);
        bytes += edgeBytes(c);
        return c;
    }

    /** Cuts c's edge after {@code k} tokens (0 < k < length): a new node takes the first k, c keeps the rest. */
    private Node split(Node c, int k) {
        int len = c.tokens.length;
        Node mid = new Node(c.parent, Arrays.copyOfRange(c.tokens, 0, k), c.depth - len + k);
        mid.keys = new float[softmax.length][];
        mid.values = new float[softmax.length][];
        float[][] restK = new float[softmax.length][], restV = new float[softmax.length][];
        for (int i = 0; i < softmax.length; i++) { // copies: a Hit may hold the old arrays
            mid.keys[i] = Arrays.copyOfRange(c.keys[i], 0, k * kvd);
            mid.values[i] = Arrays.copyOfRange(c.values[i], 0, k * kvd);
            restK[i] = Arrays.copyOfRange(c.keys[i], k * kvd, len * kvd);
            restV[i] = Arrays.copyOfRange(c.values[i], k * kvd, len * kvd);
        }
        c.keys = restK;
        c.values = restV;
        c.tokens = Arrays.copyOfRange(c.tokens, k, len);
        c.parent.children.put(mid.tokens[0], mid);
        c.parent = mid;
        mid.children.put(c.tokens[0], c);
        bytes += NODE_OVERHEAD; // the rows moved, one node more
        return mid;
    }

    /** Drops the least recently used snapshot, then every edge left with no snapshot at or below it. */
    private void evictEldest() {
        Iterator<Node> it = lru.keySet().iterator();
        Node n = it.next();
        it.remove();
        n.lightning = null;
        bytes -= lightningBytes;
        evictions++;
        while (n != root && n.lightning == null && n.children.isEmpty()) {
            n.parent.children.remove(n.tokens[0]);
            bytes -= edgeBytes(n);
            n = n.parent;
        }
    }

    private long edgeBytes(Node n) { return NODE_OVERHEAD + (long) n.tokens.length * tokenBytes(); }

    /** Drops everything (the counters stay). */
    public synchronized void clear() {
        root.children.clear();
        lru.clear();
        bytes = 0;
    }

    public synchronized Stats stats() {
        return new Stats(lookups, hits, promptTokens, cachedTokens, bytes, budget, lru.size(), evictions, skipped);
    }

    /** Bytes counted now (see the class comment). */
    public synchronized long bytes() { return bytes; }

    /** Bytes counted, recomputed from the tree (tests: equals {@link #bytes}). */
    synchronized long recount() {
        long b = 0;
        List<Node> todo = new ArrayList<>(root.children.values());
        while (!todo.isEmpty()) {
            Node n = todo.removeLast();
            b += edgeBytes(n) + (n.lightning != null ? lightningBytes : 0);
            todo.addAll(n.children.values());
        }
        return b;
    }
}
