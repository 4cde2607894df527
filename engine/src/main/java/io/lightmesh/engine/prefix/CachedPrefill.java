package io.lightmesh.engine.prefix;

import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateSnapshots;

import java.util.ArrayList;
import java.util.List;
import java.util.NavigableMap;
import java.util.TreeMap;

/**
 * Prefill through a {@link PrefixCache}: each context starts from the longest cached snapshot of its prefix (at
 * most all tokens but the last, whose logits are needed), only the rest goes through the model, and snapshots of the
 * new state are stored on the way: at every multiple of the snapshot interval (the model's prefill step, whole
 * lightning blocks), at the last lightning block boundary of the context, and at its end.
 *
 * <p>Exactness. Prefill cut at lightning block boundaries computes every row as one-shot prefill does, so a context
 * resumed from a snapshot at a block boundary gets the logits of a prefill without the cache: bit-identical on the
 * reference backend, within 1e-5 relative (max |diff| / max |logit|, measured near 6e-7) on the vector and OpenCL
 * backends, whose products sum in an order that depends on the rows of a step. A snapshot at the end of a prompt usually falls
 * inside a block: the rest of the context is then cut into blocks from there, which is the same sum in another order
 * (fp32 rounding, within the engine's 1e-4 of chunked prefill; greedy tokens equal in the tests). That is the price of
 * hits on short prompts and on the next turn of a chat, which a block grid alone would miss.
 *
 * <p>With a null cache this is the model's batched prefill, cached tokens 0.
 */
public final class CachedPrefill {
    /** The state after a context, the logits of its last token [V], and how many of its tokens came from the cache. */
    public record Result(SequenceState state, float[] logits, int cachedTokens) {}

    private final MiniMaxModel model;
    private final PrefixCache cache;
    private final int interval;

    /** @param cache the worker's cache, or null for none */
    public CachedPrefill(MiniMaxModel model, PrefixCache cache) { this(model, cache, model.prefillStepTokens()); }

    /** With snapshots every {@code interval} tokens (whole lightning blocks) along a context (tests: short prompts). */
    CachedPrefill(MiniMaxModel model, PrefixCache cache, int interval) {
        if (cache != null && !cache.config().equals(model.config())) throw new IllegalArgumentException("prefix cache of another model shape");
        if (interval < 1 || interval % model.config().blockSize() != 0) throw new IllegalArgumentException("snapshot interval must be whole lightning blocks");
        this.model = model;
        this.cache = cache;
        this.interval = interval;
    }

    public PrefixCache cache() { return cache; }

    /** One context. */
    public Result prefill(int[] context) { return prefill(List.of(context), model.prefillStepTokens()).getFirst(); }

    /**
     * Contexts side by side (the model's batched prefill, forward steps of at most {@code stepTokens} rows). Every
     * context is checked before any work: a bad one fails the call with IllegalArgumentException and stores nothing.
     */
    public List<Result> prefill(List<int[]> contexts, int stepTokens) {
        check(contexts);
        int n = contexts.size();
        List<SequenceState> states = new ArrayList<>(n);
        int[] cached = new int[n];
        if (cache == null) {
            for (int i = 0; i < n; i++) states.add(model.newState());
            float[][] logits = model.prefill(states, contexts, stepTokens);
            List<Result> out = new ArrayList<>(n);
            for (int i = 0; i < n; i++) out.add(new Result(states.get(i), logits[i], 0));
            return out;
        }
        List<int[]> stops = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int[] ctx = contexts.get(i);
            PrefixCache.Hit hit = cache.lookup(ctx, ctx.length - 1);
            cached[i] = hit == null ? 0 : hit.tokens();
            states.add(hit == null ? model.newState() : hit.restore(ctx.length - cached[i] + 256));
            stops.add(snapshotPoints(cached[i], ctx.length));
        }
        // rounds: each context runs to its next snapshot point, the contexts of a round side by side
        List<NavigableMap<Integer, float[][]>> snapshots = new ArrayList<>(n);
        for (int i = 0; i < n; i++) snapshots.add(new TreeMap<>());
        float[][] last = new float[n][];
        int[] round = new int[n];
        while (true) {
            List<Integer> who = new ArrayList<>();
            for (int i = 0; i < n; i++) if (round[i] < stops.get(i).length) who.add(i);
            if (who.isEmpty()) break;
            List<SequenceState> ss = new ArrayList<>(who.size());
            List<int[]> pieces = new ArrayList<>(who.size());
            for (int i : who) {
                int from = states.get(i).position(), to = stops.get(i)[round[i]];
                ss.add(states.get(i));
                pieces.add(java.util.Arrays.copyOfRange(contexts.get(i), from, to));
            }
            float[][] logits = model.prefill(ss, pieces, stepTokens);
            for (int j = 0; j < who.size(); j++) {
                int i = who.get(j);
                last[i] = logits[j];
                snapshots.get(i).put(states.get(i).position(), StateSnapshots.lightning(states.get(i)));
                round[i]++;
            }
        }
        List<Result> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            cache.store(contexts.get(i), states.get(i), snapshots.get(i));
            out.add(new Result(states.get(i), last[i], cached[i]));
        }
        return out;
    }

    /**
     * Where a context of {@code length} tokens resumed after {@code cached} is cut and snapshotted: the multiples of
     * the interval, the last lightning block boundary, and the end; ascending, each above {@code cached}.
     */
    int[] snapshotPoints(int cached, int length) {
        int block = model.config().blockSize();
        TreeMap<Integer, Boolean> at = new TreeMap<>();
        for (int p = (cached / interval + 1) * interval; p < length; p += interval) at.put(p, true);
        int lastBlock = length / block * block;
        if (lastBlock > cached) at.put(lastBlock, true);
        at.put(length, true);
        return at.keySet().stream().mapToInt(Integer::intValue).toArray();
    }

    private void check(List<int[]> contexts) {
        ModelConfig c = model.config();
        for (int i = 0; i < contexts.size(); i++) {
            int[] ctx = contexts.get(i);
            if (ctx.length == 0) throw new IllegalArgumentException("prefill needs at least one token (sequence " + i + ")");
            if (ctx.length > c.maxPositions()) throw new IllegalArgumentException("sequence " + i + " would exceed max_position_embeddings " + c.maxPositions());
            for (int id : ctx) {
                if (id < 0 || id >= c.vocabSize()) throw new IllegalArgumentException("token id " + id + " outside the vocabulary 0.." + (c.vocabSize() - 1));
            }
        }
    }
}
