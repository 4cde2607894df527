package io.lightmesh.client;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * One generation request: what to continue and how to choose tokens. Immutable; built with
 * {@link #prompt(String)}, {@link #tokens(int...)} or {@link #chat(List)}:
 *
 * <pre>{@code
 * GenerationRequest r = GenerationRequest.chat(List.of(ChatMessage.user("What is 17 * 23?")))
 *         .temperature(0.6).maxTokens(4096).thinkingBudget(ThinkingBudget.M1_40K).build();
 * }</pre>
 *
 * Unset sampling fields (null accessors) take the server's defaults: temperature 1.0, no top-k / top-p, a random
 * seed, the server's default token limit, no thinking budget.
 */
public final class GenerationRequest {
    private final String prompt;
    private final List<Integer> tokenIds;
    private final List<ChatMessage> messages;
    private final List<Tool> tools;
    private final Double temperature;
    private final int topK;
    private final Double topP;
    private final Long seed;
    private final Integer maxTokens;
    private final int maxThinkingTokens;
    private final List<String> stop;
    private final boolean ignoreEos;
    private final int n;
    private final Integer logprobs, promptLogprobs;
    private final double presencePenalty, frequencyPenalty;
    private final Double repetitionPenalty;
    private final String requestId;
    private final String conversationId;
    private final boolean returnTokenIds;
    private final boolean parseOutput;
    private final Duration deadline;

    private GenerationRequest(Builder b) {
        prompt = b.prompt;
        tokenIds = b.tokenIds;
        messages = b.messages;
        tools = List.copyOf(b.tools);
        temperature = b.temperature;
        topK = b.topK;
        topP = b.topP;
        seed = b.seed;
        maxTokens = b.maxTokens;
        maxThinkingTokens = b.maxThinkingTokens;
        stop = List.copyOf(b.stop);
        ignoreEos = b.ignoreEos;
        n = b.n;
        logprobs = b.logprobs;
        promptLogprobs = b.promptLogprobs;
        presencePenalty = b.presencePenalty;
        frequencyPenalty = b.frequencyPenalty;
        repetitionPenalty = b.repetitionPenalty;
        requestId = b.requestId;
        conversationId = b.conversationId;
        returnTokenIds = b.returnTokenIds;
        parseOutput = b.parseOutput;
        deadline = b.deadline;
    }

    /** Continue raw text, tokenized as is (no chat template, no special tokens added). Raw output by default. */
    public static Builder prompt(String text) {
        Builder b = new Builder();
        b.prompt = Objects.requireNonNull(text, "text");
        return b;
    }

    /** Continue these token ids. Raw output by default. */
    public static Builder tokens(int... ids) {
        return tokens(Arrays.stream(ids).boxed().toList());
    }

    /** Continue these token ids. Raw output by default. */
    public static Builder tokens(List<Integer> ids) {
        Builder b = new Builder();
        b.tokenIds = List.copyOf(ids);
        return b;
    }

    /**
     * Continue a conversation: the server applies the model's chat template and asks for the assistant's turn.
     * Output is parsed by default (reasoning and tool calls apart from the answer).
     */
    public static Builder chat(List<ChatMessage> messages) {
        if (messages.isEmpty()) throw new IllegalArgumentException("a chat needs at least one message");
        Builder b = new Builder();
        b.messages = List.copyOf(messages);
        b.parseOutput = true;
        return b;
    }

    /** Continue a conversation; see {@link #chat(List)}. */
    public static Builder chat(ChatMessage... messages) { return chat(List.of(messages)); }

    /** A builder holding this request's values. */
    public Builder toBuilder() {
        Builder b = new Builder();
        b.prompt = prompt;
        b.tokenIds = tokenIds;
        b.messages = messages;
        b.tools = new ArrayList<>(tools);
        b.temperature = temperature;
        b.topK = topK;
        b.topP = topP;
        b.seed = seed;
        b.maxTokens = maxTokens;
        b.maxThinkingTokens = maxThinkingTokens;
        b.stop = new ArrayList<>(stop);
        b.ignoreEos = ignoreEos;
        b.n = n;
        b.logprobs = logprobs;
        b.promptLogprobs = promptLogprobs;
        b.presencePenalty = presencePenalty;
        b.frequencyPenalty = frequencyPenalty;
        b.repetitionPenalty = repetitionPenalty;
        b.requestId = requestId;
        b.conversationId = conversationId;
        b.returnTokenIds = returnTokenIds;
        b.parseOutput = parseOutput;
        b.deadline = deadline;
        return b;
    }

    /** The raw text input, or null. */
    public String prompt() { return prompt; }

    /** The token-id input, or null. */
    public List<Integer> tokenIds() { return tokenIds; }

    /** The chat input, or null. */
    public List<ChatMessage> messages() { return messages; }

    /** Tools offered to the model (chat only). */
    public List<Tool> tools() { return tools; }

    /** Softmax temperature (0: greedy), or null for the server's default (1.0). */
    public Double temperature() { return temperature; }

    /** Top-k, 0 for none. */
    public int topK() { return topK; }

    /** Nucleus top-p, or null for none. */
    public Double topP() { return topP; }

    /** Random seed, or null for a random one. */
    public Long seed() { return seed; }

    /** Most tokens to generate (reasoning included), or null for the server's default. */
    public Integer maxTokens() { return maxTokens; }

    /** Most tokens of reasoning, 0 for no budget beyond {@link #maxTokens()}. */
    public int maxThinkingTokens() { return maxThinkingTokens; }

    /** Stop strings. */
    public List<String> stop() { return stop; }

    /** Whether to keep generating past the end-of-sentence token. */
    public boolean ignoreEos() { return ignoreEos; }

    /** Number of choices (independent samples), 1..16. */
    public int n() { return n; }

    /** Alternatives listed with each generated token's log-probability (0..20), or null for no log-probabilities. */
    public Integer logprobs() { return logprobs; }

    /** Alternatives listed with each prompt token's log-probability (0..20), or null for none. */
    public Integer promptLogprobs() { return promptLogprobs; }

    /** OpenAI's presence penalty, in [-2, 2] (0: none). */
    public double presencePenalty() { return presencePenalty; }

    /** OpenAI's frequency penalty, in [-2, 2] (0: none). */
    public double frequencyPenalty() { return frequencyPenalty; }

    /** vLLM's repetition penalty (> 0), or null for none. */
    public Double repetitionPenalty() { return repetitionPenalty; }

    /** The caller's request id, or null (the client then assigns one). */
    public String requestId() { return requestId; }

    /** The conversation id (requests sharing one are queued together), or null. */
    public String conversationId() { return conversationId; }

    /** Whether the generated token ids are returned. */
    public boolean returnTokenIds() { return returnTokenIds; }

    /** Whether reasoning and tool calls are split out of the text. */
    public boolean parseOutput() { return parseOutput; }

    /** This request's deadline, or null for the client's default. */
    public Duration deadline() { return deadline; }

    /** Sets up a {@link GenerationRequest}. Setters return the builder. */
    public static final class Builder {
        private String prompt;
        private List<Integer> tokenIds;
        private List<ChatMessage> messages;
        private List<Tool> tools = new ArrayList<>();
        private Double temperature;
        private int topK;
        private Double topP;
        private Long seed;
        private Integer maxTokens;
        private int maxThinkingTokens;
        private List<String> stop = new ArrayList<>();
        private boolean ignoreEos;
        private int n = 1;
        private Integer logprobs, promptLogprobs;
        private double presencePenalty, frequencyPenalty;
        private Double repetitionPenalty;
        private String requestId;
        private String conversationId;
        private boolean returnTokenIds;
        private boolean parseOutput;
        private Duration deadline;

        private Builder() {}

        /** Tools the model may call (chat requests only). Replaces earlier ones. */
        public Builder tools(List<Tool> tools) {
            this.tools = new ArrayList<>(tools);
            return this;
        }

        /** Tools the model may call (chat requests only). Replaces earlier ones. */
        public Builder tools(Tool... tools) { return tools(List.of(tools)); }

        /** Softmax temperature; 0 means greedy. */
        public Builder temperature(double t) {
            if (!(t >= 0)) throw new IllegalArgumentException("temperature must be >= 0");
            temperature = t;
            return this;
        }

        /** Keep only the k most likely tokens; 0 for no limit. */
        public Builder topK(int k) {
            if (k < 0) throw new IllegalArgumentException("topK must be >= 0");
            topK = k;
            return this;
        }

        /** Nucleus sampling, in (0, 1]. */
        public Builder topP(double p) {
            if (!(p > 0 && p <= 1)) throw new IllegalArgumentException("topP must be in (0, 1]");
            topP = p;
            return this;
        }

        /** Seed of the request's random generator: the same seed and input give the same tokens. */
        public Builder seed(long seed) {
            this.seed = seed;
            return this;
        }

        /** Most tokens to generate, reasoning included. */
        public Builder maxTokens(int n) {
            if (n < 1) throw new IllegalArgumentException("maxTokens must be >= 1");
            maxTokens = n;
            return this;
        }

        /**
         * Thinking budget: most tokens of reasoning. When spent, the server closes the reasoning block itself and
         * the model answers. 0: no budget beyond {@link #maxTokens(int)}.
         */
        public Builder maxThinkingTokens(int n) {
            if (n < 0) throw new IllegalArgumentException("maxThinkingTokens must be >= 0");
            maxThinkingTokens = n;
            return this;
        }

        /** Thinking budget from a preset matching the M1 releases. */
        public Builder thinkingBudget(ThinkingBudget budget) { return maxThinkingTokens(budget.tokens()); }

        /** Generation stops when the output ends with one of these; the match is not part of the output. */
        public Builder stop(String... stops) { return stop(List.of(stops)); }

        /** Stop strings; replaces earlier ones. */
        public Builder stop(List<String> stops) {
            for (String s : stops) if (s.isEmpty()) throw new IllegalArgumentException("empty stop string");
            stop = new ArrayList<>(stops);
            return this;
        }

        /** Keep generating past the end-of-sentence token (fixed-length benchmarks). */
        public Builder ignoreEos(boolean ignore) {
            ignoreEos = ignore;
            return this;
        }

        /**
         * Several independent answers (choices) to the prompt, 1..16: the server prefills the prompt once and decodes a
         * copy of its state per choice. With a seed, choice 0 is what one sample gives and every choice is reproducible.
         */
        public Builder n(int n) {
            if (n < 1 || n > 16) throw new IllegalArgumentException("n must be in 1..16");
            this.n = n;
            return this;
        }

        /**
         * Return each generated token's log-probability with its {@code top} most likely alternatives (0..20), from
         * the model's raw logits (before penalties, temperature, top-k, top-p).
         */
        public Builder logprobs(int top) {
            if (top < 0 || top > 20) throw new IllegalArgumentException("logprobs must be in 0..20");
            logprobs = top;
            return this;
        }

        /** Return the prompt tokens' log-probabilities (from the second token), each with {@code top} alternatives (0..20). */
        public Builder promptLogprobs(int top) {
            if (top < 0 || top > 20) throw new IllegalArgumentException("promptLogprobs must be in 0..20");
            promptLogprobs = top;
            return this;
        }

        /** OpenAI's presence penalty, in [-2, 2]: subtracted once from the logit of each token already in the output. */
        public Builder presencePenalty(double p) {
            if (!(p >= -2 && p <= 2)) throw new IllegalArgumentException("presencePenalty must be in [-2, 2]");
            presencePenalty = p;
            return this;
        }

        /** OpenAI's frequency penalty, in [-2, 2]: subtracted from a token's logit once per occurrence in the output. */
        public Builder frequencyPenalty(double p) {
            if (!(p >= -2 && p <= 2)) throw new IllegalArgumentException("frequencyPenalty must be in [-2, 2]");
            frequencyPenalty = p;
            return this;
        }

        /**
         * vLLM's and HF's repetition penalty, > 0: logits of tokens in the prompt or output are divided by it when
         * positive, multiplied otherwise (1: none).
         */
        public Builder repetitionPenalty(double p) {
            if (!(p > 0) || Double.isInfinite(p)) throw new IllegalArgumentException("repetitionPenalty must be > 0");
            repetitionPenalty = p;
            return this;
        }

        /** The request's id, unique per request; retries of this request reuse it. Unset: the client picks one. */
        public Builder requestId(String id) {
            requestId = id == null || id.isEmpty() ? null : id;
            return this;
        }

        /** Requests sharing a conversation id are queued together (in order, near their cache). */
        public Builder conversationId(String id) {
            conversationId = id == null || id.isEmpty() ? null : id;
            return this;
        }

        /** Also return the generated token ids, and the prompt's (as the model saw it). */
        public Builder returnTokenIds(boolean b) {
            returnTokenIds = b;
            return this;
        }

        /** Split reasoning and tool calls out of the text (default: true for chat, false otherwise). */
        public Builder parseOutput(boolean b) {
            parseOutput = b;
            return this;
        }

        /** Deadline of this request, retries included; overrides the client's default. */
        public Builder deadline(Duration d) {
            if (d.isNegative() || d.isZero()) throw new IllegalArgumentException("deadline must be positive");
            deadline = d;
            return this;
        }

        /** The request. */
        public GenerationRequest build() {
            if (!tools.isEmpty() && messages == null) throw new IllegalStateException("tools need a chat request");
            return new GenerationRequest(this);
        }
    }
}
