package io.lightmesh.engine.generate;

import io.lightmesh.engine.model.DecodeResult;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.function.BiConsumer;

/**
 * Continuous batching: sequences join and leave between steps, and every step runs one batched decode over all
 * running sequences, so each weight is read once per step rather than once per sequence.
 *
 * <p>Single-threaded by design: one thread calls {@link #step()}; other threads only {@link #add} and
 * {@link #cancel}, which take effect at the next step boundary.
 */
public final class ContinuousBatcher {
    private final MiniMaxModel model;
    private final int maxBatch;
    private final BiConsumer<Generation, Generation.Step> listener;
    private final ConcurrentLinkedQueue<Generation> joining = new ConcurrentLinkedQueue<>();
    private final ConcurrentLinkedQueue<String> cancelled = new ConcurrentLinkedQueue<>();
    private final List<Generation> running = new ArrayList<>();
    private int lastLogitRows; // rows of the last step whose logits came back (the rest took the step's argmax)

    public ContinuousBatcher(MiniMaxModel model, int maxBatch, BiConsumer<Generation, Generation.Step> listener) {
        this.model = model;
        this.maxBatch = maxBatch;
        this.listener = listener;
    }

    /** Adds a sequence whose first token was already chosen (from its prefill logits). */
    public void add(Generation g) { joining.add(g); }

    public void cancel(String id) { cancelled.add(id); }

    public int running() { return running.size(); }

    /**
     * Rows of the last step whose token needed the logits (sampled, penalised, log-probabilities): on the device path
     * only those rows' logits are read back; the others took the step's argmax.
     */
    public int lastLogitRows() { return lastLogitRows; }

    public boolean idle() { return running.isEmpty() && joining.isEmpty(); }

    /** One decode step over the running batch; returns the batch size used (0 when idle). */
    public int step() {
        for (String id; (id = cancelled.poll()) != null; ) {
            for (Generation g : running) if (g.id().equals(id)) g.cancel();
            for (Generation g : joining) if (g.id().equals(id)) g.cancel();
        }
        while (running.size() < maxBatch && !joining.isEmpty()) running.add(joining.poll());
        running.removeIf(g -> {
            if (!g.finished()) return false;
            listener.accept(g, new Generation.Step(-1, "", true, g.finishReason()));
            return true;
        });
        if (running.isEmpty()) return 0;
        int b = running.size();
        List<SequenceState> states = new ArrayList<>(b);
        int[] tokens = new int[b];
        for (int i = 0; i < b; i++) {
            states.add(running.get(i).state());
            tokens[i] = running.get(i).nextInput();
        }
        boolean[] wanted = new boolean[b]; // greedy rows take the device's argmax: no logits read back for them
        lastLogitRows = 0;
        for (int i = 0; i < b; i++) if (wanted[i] = running.get(i).needsLogits()) lastLogitRows++;
        DecodeResult out = model.decode(states, tokens, wanted);
        List<Generation> done = new ArrayList<>();
        for (int i = 0; i < b; i++) {
            Generation g = running.get(i);
            Generation.Step s = wanted[i] ? g.accept(out.logits()[i]) : g.acceptArgmax(out.argmax()[i]);
            listener.accept(g, s);
            if (s.finished()) done.add(g);
        }
        running.removeAll(done);
        return b;
    }
}
