package io.lightmesh.engine.generate;

import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.model.StateFork;
import io.lightmesh.engine.tokenizer.Tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.function.BiConsumer;
import java.util.function.Consumer;

/**
 * Generates for one prompt in this process: prefill the prompt once, then decode token by token, for one choice or
 * several (the state forked after the prefill, the choices decoded side by side in batched steps).
 */
public final class Generator {

    /**
     * The outcome of one choice: new token ids (eos excluded), their text, why it stopped, and, when asked for, the
     * log-probabilities of the new tokens (one per token id) and of the prompt (from its second token; the same list
     * in every choice).
     */
    public record Result(int[] tokens, String text, FinishReason reason, int promptTokens, List<TokenLogprob> logprobs,
                         List<TokenLogprob> promptLogprobs) {
        public Result(int[] tokens, String text, FinishReason reason, int promptTokens) {
            this(tokens, text, reason, promptTokens, List.of(), List.of());
        }
    }

    /** Most choices one request may ask for. */
    public static final int MAX_CHOICES = 16;

    private Generator() {}

    public static Result generate(MiniMaxModel model, Tokenizer tokenizer, int[] prompt, SamplingParams params,
                                  Consumer<Generation.Step> listener) {
        return generate(model, tokenizer, prompt, params, 1, -1, listener == null ? null : (i, s) -> listener.accept(s)).getFirst();
    }

    /**
     * {@code n} choices for one prompt: one prefill, the state forked {@code n - 1} times, choice {@code i} sampled
     * with {@link SamplingParams#forChoice}{@code (i)}.
     *
     * @param promptLogprobs -1: none; 0..20: score the prompt too, with that many alternatives per position
     * @param listener       each step of each choice, with the choice's index (may be null)
     */
    public static List<Result> generate(MiniMaxModel model, Tokenizer tokenizer, int[] prompt, SamplingParams params, int n,
                                        int promptLogprobs, BiConsumer<Integer, Generation.Step> listener) {
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt is empty");
        if (n < 1 || n > MAX_CHOICES) throw new IllegalArgumentException("n must be in 1.." + MAX_CHOICES + ", got " + n);
        SequenceState root = model.newState();
        float[] last;
        List<TokenLogprob> scored = List.of();
        boolean any = params.maxNewTokens() > 0;
        if (promptLogprobs >= 0) {
            PromptLogprobs.Result r = PromptLogprobs.prefill(model, root, prompt, promptLogprobs);
            last = r.lastLogits();
            scored = r.logprobs();
        } else {
            last = any ? model.prefill(root, prompt) : null;
        }
        List<Generation> gens = new ArrayList<>(n);
        List<StringBuilder> texts = new ArrayList<>(n);
        List<List<TokenLogprob>> lps = new ArrayList<>(n);
        for (int i = 0; i < n; i++) { // forks first: the root is decoded as choice 0
            SequenceState s = i == 0 ? root : StateFork.copy(root, root.position() + params.maxNewTokens());
            gens.add(new Generation("local#" + i, s, params.forChoice(i), tokenizer, prompt));
            texts.add(new StringBuilder());
            lps.add(new ArrayList<>());
        }
        List<Integer> running = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (gens.get(i).finished()) continue;
            if (onStep(i, gens.get(i).accept(last), texts, lps, listener)) running.add(i);
        }
        while (!running.isEmpty()) {
            List<SequenceState> states = new ArrayList<>(running.size());
            int[] inputs = new int[running.size()];
            for (int j = 0; j < running.size(); j++) {
                states.add(gens.get(running.get(j)).state());
                inputs[j] = gens.get(running.get(j)).nextInput();
            }
            boolean[] wanted = new boolean[running.size()]; // greedy choices take the device's argmax
            for (int j = 0; j < running.size(); j++) wanted[j] = gens.get(running.get(j)).needsLogits();
            io.lightmesh.engine.model.DecodeResult step = model.decode(states, inputs, wanted);
            List<Integer> still = new ArrayList<>(running.size());
            for (int j = 0; j < running.size(); j++) {
                int i = running.get(j);
                Generation g = gens.get(i);
                Generation.Step st = wanted[j] ? g.accept(step.logits()[j]) : g.acceptArgmax(step.argmax()[j]);
                if (onStep(i, st, texts, lps, listener)) still.add(i);
            }
            running = still;
        }
        List<Result> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            Generation g = gens.get(i);
            out.add(new Result(g.tokens(), texts.get(i).toString(), g.finishReason(), prompt.length, List.copyOf(lps.get(i)), scored));
        }
        return out;
    }

    /** Folds one step into choice {@code i}'s outcome; true while the choice goes on. */
    private static boolean onStep(int i, Generation.Step step, List<StringBuilder> texts, List<List<TokenLogprob>> lps,
                                  BiConsumer<Integer, Generation.Step> listener) {
        texts.get(i).append(step.text());
        if (step.logprob() != null) lps.get(i).add(step.logprob()); // none for eos, which is not output
        if (listener != null) listener.accept(i, step);
        return !step.finished();
    }
}
