package io.lightmesh.engine.generate;

import io.lightmesh.engine.model.DecodeResult;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.function.BiConsumer;
import java.util.function.IntConsumer;
import java.util.stream.IntStream;

/**
 * Continuous batching: sequences join and leave between steps, and every step runs one batched decode over all
 * running sequences, so each weight is read once per step rather than once per sequence.
 *
 * <p>Single-threaded by design: one thread calls {@link #step()}; other threads only {@link #add} and
 * {@link #cancel}, which take effect at the next step boundary. Within a step, the rows that sample from their logits
 * draw their tokens on the common fork-join pool (each generation touched by one thread); the listener is called on
 * the stepping thread, in row order.
 */
public final class ContinuousBatcher {
    private final MiniMaxModel model;
    private final int maxBatch;
    private final BiConsumer<Generation, Generation.Step> listener;
    private final ConcurrentLinkedQueue<Generation> joining = new ConcurrentLinkedQueue<>();
    private final ConcurrentLinkedQueue<String> cancelled = new ConcurrentLinkedQueue<>();
    private final List<Generation> running = new ArrayList<>();
    private int lastLogitRows; // rows of the last step whose logits came back (the rest took the step's argmax)
    /** From this many rows sampled from their logits, a step draws them in parallel. */
    static final int PARALLEL_MIN_ROWS = 2;

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
        Generation.Step[] steps = new Generation.Step[b];
        IntConsumer choose = i -> steps[i] = wanted[i] ? running.get(i).accept(out.logits()[i])
                : running.get(i).acceptArgmax(out.argmax()[i]);
        // rows sampled from their logits (a top-k / top-p draw over the vocabulary, log-probabilities: ~1-6 ms a row
        // at V = 200,064) on the common pool's threads; each generation has its own sampler and generator, so the
        // tokens do not depend on which thread drew them. Greedy rows take their argmax here.
        IntStream rows = IntStream.range(0, b);
        (lastLogitRows >= PARALLEL_MIN_ROWS ? rows.parallel() : rows).forEach(choose);
        List<Generation> done = new ArrayList<>();
        for (int i = 0; i < b; i++) { // the listener in row order, on this thread
            Generation g = running.get(i);
            listener.accept(g, steps[i]);
            if (steps[i].finished()) done.add(g);
        }
        running.removeAll(done);
        return b;
    }
}
