package io.lightmesh.router;

import io.grpc.Status;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.RequestStats;
import io.lightmesh.proto.v1.TokenLogprob;
import io.lightmesh.proto.v1.Usage;

import java.util.List;

/** Where a request's output goes: the streaming or the unary handler of Inference. */
interface AnswerSink {
    /**
     * One decode event's worth for choice {@code choice}: the new token ids (eos excluded), what they add for the
     * client, their log-probabilities (when asked for), and the prompt's (once, with the first event).
     */
    void delta(int choice, List<Integer> ids, Answer.Delta delta, List<TokenLogprob> logprobs, List<TokenLogprob> promptLogprobs);

    /**
     * Choice {@code choice} ended; {@code usage} and {@code stats} are set when it was the last choice to end (the
     * request is then done), null otherwise.
     */
    void finish(int choice, FinishReason reason, String matchedStop, int completionTokens, int reasoningTokens,
                Usage usage, RequestStats stats);

    void fail(Status status);
}
