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
 */
public final class Generation {

    /** What one step produced. {@code text} is the newly final answer text (may be empty). */
    public record Step(int token, String text, boolean finished, FinishReason reason) {}

    private final String id;
    private final SequenceState state;
    private final SamplingParams params;
    private final Sampler sampler;
    private final StreamingDecoder decoder; // null when the model has no tokenizer: ids only
    private final int eos, thinkOpen, thinkClose;
    private final int[] forcedClose;          // tokens of "\n</think>\n", forced when the thinking budget is spent
    private final Deque<Integer> forced = new ArrayDeque<>();
    private final StringBuilder held = new StringBuilder(); // text held back while it may begin a stop string
    private final int holdBack;
    private int[] generated = new int[16];
    private int count, thinkingTokens, nextInput = -1;
    private boolean thinking, finished;
    private FinishReason reason;

    public Generation(String id, SequenceState state, SamplingParams params, Tokenizer tokenizer) {
        this.id = id;
        this.state = state;
        this.params = params;
        this.sampler = new Sampler(params);
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
     * Takes the logits predicting the next token (from prefill for the first step, then from decode), chooses the
     * token (sampled, or forced by the thinking budget) and applies the stop rules.
     */
    public Step accept(float[] logits) {
        if (finished) throw new IllegalStateException("generation " + id + " already finished");
        boolean wasForced = !forced.isEmpty();
        int token = wasForced ? forced.poll() : sampler.sample(logits);
        if (token == eos) { // end of turn: not part of the output
            return new Step(token, finish(FinishReason.STOP), true, reason);
        }
        append(token);
        trackThinking(token, wasForced);
        String text = decoder == null ? "" : decoder.accept(token);
        String out = release(text);
        if (finished) return new Step(token, out, true, reason);
        if (count >= params.maxNewTokens()) return new Step(token, out + finish(FinishReason.LENGTH), true, reason);
        nextInput = token;
        return new Step(token, out, false, null);
    }

    private void trackThinking(int token, boolean wasForced) {
        if (token == thinkOpen) { thinking = true; return; }
        if (token == thinkClose) {
            thinking = false;
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
    public int thinkingTokens() { return thinkingTokens; }
}
