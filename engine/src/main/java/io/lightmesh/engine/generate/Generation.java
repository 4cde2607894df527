package io.lightmesh.engine.generate;

import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tokenizer.StreamingDecoder;
import io.lightmesh.engine.tokenizer.Tokenizer;

import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Deque;

/**
 * One sequence being generated: its state, its sampler, and the rules that end it (eos, stop strings, token limit)
 * or steer it (the thinking budget). The model is driven from outside (one sequence by {@link Generator}, many by
 * {@link ContinuousBatcher}): each step hands this object the logits of its last token, and it answers with the
 * next token to feed and the text that became final.
 *
 * <p>A generation can move between processes: {@link #resume} rebuilds it from its parameters and the tokens it
 * produced so far (the sampler is advanced by the draws those tokens took), and {@link #acceptChosen} applies a
 * token that another instance with the same history chose from the same logits. Sampling is sequential draws
 * from one seeded generator, one draw per sampled token and none per forced token, so where a token is drawn does
 * not change it.
 */
public final class Generation {

    /**
     * What one step produced. {@code text} is the newly final answer text (may be empty); {@code logprob} the chosen
     * token's log-probability when the parameters ask for them and the logits were at hand (null otherwise).
     */
    public record Step(int token, String text, boolean finished, FinishReason reason, TokenLogprob logprob) {
        public Step(int token, String text, boolean finished, FinishReason reason) { this(token, text, finished, reason, null); }
    }

    private final String id;
    private final SequenceState state;
    private final SamplingParams params;
    private final Sampler sampler;
    private final TokenHistory history;     // null when no penalty is set
    private final StreamingDecoder decoder; // null when the model has no tokenizer: ids only
    private final int eos, thinkOpen, thinkClose;
    private final int[] forcedClose;          // tokens of "\n</think>\n", forced when the thinking budget is spent
    private final Deque<Integer> forced = new ArrayDeque<>();
    private final StringBuilder held = new StringBuilder(); // text held back while it may begin a stop string
    private final int holdBack;
    private int[] generated = new int[16];
    private int count, thinkingTokens, nextInput = -1;
    private boolean thinking, finished;
    private boolean closedByBudget;           // the budget forced </think>: the model may not close it again
    private FinishReason reason;
    private String matchedStop = "";

    public Generation(String id, SequenceState state, SamplingParams params, Tokenizer tokenizer) {
        this(id, state, params, tokenizer, new int[0]);
    }

    /** @param prompt the prompt's tokens, which the repetition penalty counts as seen */
    public Generation(String id, SequenceState state, SamplingParams params, Tokenizer tokenizer, int[] prompt) {
        this.id = id;
        this.state = state;
        this.params = params;
        this.sampler = new Sampler(params);
        this.history = params.penalties().active() ? new TokenHistory(prompt) : null;
        this.decoder = tokenizer == null ? null : new StreamingDecoder(tokenizer);
        this.eos = tokenizer == null ? -1 : tokenizer.eosId().orElse(-1);
        this.thinkOpen = tokenizer == null ? -1 : tokenizer.tokenId("<think>");
        this.thinkClose = tokenizer == null ? -1 : tokenizer.tokenId("</think>");
        this.forcedClose = thinkClose < 0 ? new int[0] : tokenizer.encode("\n</think>\n");
        int longest = 0;
        for (String s : params.stop()) longest = Math.max(longest, s.length());
        this.holdBack = Math.max(0, longest - 1);
        if (!params.stop().isEmpty() && tokenizer == null) {
            throw new IllegalArgumentException("stop strings need a model with a tokenizer");
        }
        if (params.maxNewTokens() == 0) finish(FinishReason.LENGTH);
    }

    /**
     * Rebuilds a generation that already produced {@code generated} (eos excluded), e.g. on another worker after the
     * one running it was lost: the sampler, the thinking budget, the stop-string hold-back and the UTF-8 decoder
     * end up as they were after those tokens. The text those tokens released is not returned again; text still held
     * back then (a possible stop-string prefix, bytes of an unfinished character) comes out with later steps,
     * exactly as without the interruption.
     *
     * @throws IllegalArgumentException when the tokens already end the generation, or contradict a forced token
     */
    public static Generation resume(String id, SequenceState state, SamplingParams params, Tokenizer tokenizer,
                                    int[] generated) {
        return resume(id, state, params, tokenizer, new int[0], generated);
    }

    /** As {@link #resume(String, SequenceState, SamplingParams, Tokenizer, int[])}, with the prompt for the penalties. */
    public static Generation resume(String id, SequenceState state, SamplingParams params, Tokenizer tokenizer,
                                    int[] prompt, int[] generated) {
        Generation g = new Generation(id, state, params, tokenizer, prompt);
        for (int t : generated) {
            if (g.finished) {
                throw new IllegalArgumentException("generation " + id + " ended before its " + generated.length + " tokens");
            }
            g.acceptChosen(t);
        }
        return g;
    }

    /**
     * Takes the logits predicting the next token (from prefill for the first step, then from decode), chooses the
     * token (sampled, or forced by the thinking budget) and applies the stop rules.
     */
    public Step accept(float[] logits) {
        if (finished) throw new IllegalStateException("generation " + id + " already finished");
        boolean wasForced = !forced.isEmpty();
        int token = wasForced ? forced.poll() : sampler.sample(closedByBudget ? withoutThinkClose(logits) : logits, history);
        return apply(token, wasForced, params.logprobs() >= 0 ? TokenLogprob.of(logits, token, params.logprobs()) : null);
    }

    /**
     * Whether the next {@link #accept} needs the step's logits: false where the token is the plain argmax of the raw
     * logits (greedy, no penalty, no log-probabilities, {@code </think>} not barred) or is forced by the thinking budget
     * without log-probabilities. Then {@link #acceptArgmax} takes the device's choice and the step reads no logits.
     */
    public boolean needsLogits() {
        if (params.logprobs() >= 0) return true;
        if (!forced.isEmpty()) return false;
        return !params.isGreedy() || history != null || closedByBudget;
    }

    /**
     * {@link #accept} for a step whose logits this generation did not need ({@link #needsLogits} false): {@code argmax}
     * is the index of the largest raw logit, which is what greedy sampling picks; a forced token still goes first.
     */
    public Step acceptArgmax(int argmax) {
        if (finished) throw new IllegalStateException("generation " + id + " already finished");
        if (needsLogits()) throw new IllegalStateException("generation " + id + " needs the logits to choose its token");
        boolean wasForced = !forced.isEmpty();
        return apply(wasForced ? forced.poll() : argmax, wasForced, null);
    }

    /**
     * Applies a token chosen elsewhere by a generation with this one's history from the same logits (the prefill
     * worker draws the first token, the decode worker continues): the sampler advances as if it had drawn it.
     *
     * @throws IllegalArgumentException when the thinking budget forces another token here
     */
    public Step acceptChosen(int token) {
        return acceptChosen(token, null);
    }

    /** As {@link #acceptChosen(int)}; {@code logprob} (may be null) is what the other instance computed for it. */
    public Step acceptChosen(int token, TokenLogprob logprob) {
        if (finished) throw new IllegalStateException("generation " + id + " already finished");
        boolean wasForced = !forced.isEmpty();
        if (wasForced) {
            int f = forced.poll();
            if (f != token) throw new IllegalArgumentException("token " + token + " where the thinking budget forces " + f);
        } else {
            sampler.skip();
        }
        return apply(token, wasForced, logprob);
    }

    private Step apply(int token, boolean wasForced, TokenLogprob lp) {
        if (token == eos && !params.ignoreEos()) { // end of turn: not part of the output (nor are its log-probabilities)
            return new Step(token, finish(FinishReason.STOP), true, reason);
        }
        append(token);
        if (history != null) history.add(token);
        trackThinking(token, wasForced);
        String text = decoder == null ? "" : decoder.accept(token);
        String out = release(text);
        if (finished) return new Step(token, out, true, reason, lp);
        if (count >= params.maxNewTokens()) return new Step(token, out + finish(FinishReason.LENGTH), true, reason, lp);
        nextInput = token;
        return new Step(token, out, false, null, lp);
    }

    /**
     * The logits to sample from once the thinking budget has closed the reasoning: without {@code </think>}. A model
     * cut short mid-thought tends to finish the thought and close it again; that second tag would land in the
     * answer (the parser reads one reasoning block), so it is not offered. Log-probabilities stay the raw ones.
     */
    private float[] withoutThinkClose(float[] logits) {
        float[] l = logits.clone();
        l[thinkClose] = Float.NEGATIVE_INFINITY;
        return l;
    }

    private void trackThinking(int token, boolean wasForced) {
        if (token == thinkOpen) { thinking = true; return; }
        if (token == thinkClose) {
            thinking = false;
            if (wasForced) closedByBudget = true;
            if (!wasForced) forced.clear(); // the model closed its reasoning itself: nothing left to force
            return;
        }
        if (!thinking) return;
        thinkingTokens++;
        if (params.maxThinkingTokens() > 0 && thinkingTokens >= params.maxThinkingTokens() && forced.isEmpty()) {
            for (int t : forcedClose) forced.add(t);
        }
    }

    /** Adds decoded text; returns what is final, holding back a possible stop-string prefix. */
    private String release(String text) {
        held.append(text);
        for (String s : params.stop()) {
            int at = held.indexOf(s);
            if (at >= 0) {
                String out = held.substring(0, at);
                held.setLength(0);
                matchedStop = s;
                finish(FinishReason.STOP);
                return out;
            }
        }
        int keep = Math.min(holdBack, held.length());
        String out = held.substring(0, held.length() - keep);
        held.delete(0, held.length() - keep);
        return out;
    }

    private String finish(FinishReason why) {
        if (finished) return "";
        finished = true;
        reason = why;
        String tail = decoder == null ? "" : decoder.flush();
        String out = held + tail;
        held.setLength(0);
        for (String s : params.stop()) { // a stop string completed by the flushed bytes
            int at = out.indexOf(s);
            if (at >= 0) out = out.substring(0, at);
        }
        return out;
    }

    /** Ends the generation from outside (client gone, deadline); idempotent. */
    public void cancel() {
        if (!finished) finish(FinishReason.CANCELLED);
    }

    private void append(int token) {
        if (count == generated.length) generated = Arrays.copyOf(generated, count * 2);
        generated[count++] = token;
    }

    public String id() { return id; }
    public SequenceState state() { return state; }
    public SamplingParams params() { return params; }
    /** The token to feed in the next decode step (the last one chosen). */
    public int nextInput() { return nextInput; }
    public boolean finished() { return finished; }
    public FinishReason finishReason() { return reason; }
    /** Generated tokens so far, eos excluded. */
    public int[] tokens() { return Arrays.copyOf(generated, count); }
    /** How many tokens were generated so far, eos excluded (without copying them). */
    public int tokenCount() { return count; }
    /** The stop string that ended the generation; "" when none did. */
    public String matchedStop() { return matchedStop; }
    public int thinkingTokens() { return thinkingTokens; }
}
