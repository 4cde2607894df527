package io.lightmesh.router;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.Choice;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerateChunk;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerateResponse;
import io.lightmesh.proto.v1.HealthRequest;
import io.lightmesh.proto.v1.HealthResponse;
import io.lightmesh.proto.v1.InferenceGrpc;
import io.lightmesh.proto.v1.ModelInfo;
import io.lightmesh.proto.v1.ModelInfoRequest;
import io.lightmesh.proto.v1.RequestStats;
import io.lightmesh.proto.v1.TokenLogprob;
import io.lightmesh.proto.v1.TokenizeRequest;
import io.lightmesh.proto.v1.TokenizeResponse;
import io.lightmesh.proto.v1.Usage;

import java.util.List;
import java.util.function.Supplier;

/**
 * lightmesh.v1.Inference, the router's public API: Generate (one answer) and GenerateStream (chunks as tokens come),
 * each an {@link AnswerSink} of a {@link RequestRun} admitted by {@link Admission}; Tokenize, GetModelInfo, Health.
 */
final class InferenceImpl extends InferenceGrpc.InferenceImplBase {
    private final Admission admission;
    private final RequestValidator validator;
    private final Supplier<ModelInfo> modelInfo;
    private final Supplier<HealthResponse> health;

    /** @param validator tokenizes as a request would be; modelInfo and health are read anew at each call */
    InferenceImpl(Admission admission, RequestValidator validator, Supplier<ModelInfo> modelInfo, Supplier<HealthResponse> health) {
        this.admission = admission;
        this.validator = validator;
        this.modelInfo = modelInfo;
        this.health = health;
    }

    @Override
    public void generateStream(GenerateRequest r, StreamObserver<GenerateChunk> out) {
        ServerCallStreamObserver<GenerateChunk> obs = (ServerCallStreamObserver<GenerateChunk>) out;
        obs.setOnCancelHandler(() -> {});
        RequestRun[] run = new RequestRun[1];
        try {
            run[0] = admission.admit(r, new AnswerSink() {
                boolean started; // the first chunk carries the prompt's token ids

                private void send(GenerateChunk.Builder c) {
                    if (!started && r.getReturnTokenIds()) c.addAllPromptTokenIds(run[0].spec.getPromptTokensList());
                    started = true;
                    obs.onNext(c.setRequestId(run[0].spec.getRequestId()).build());
                }

                @Override public void delta(int choice, List<Integer> ids, Answer.Delta d, List<TokenLogprob> lps, List<TokenLogprob> promptLps) {
                    if (d.isEmpty() && !r.getReturnTokenIds() && lps.isEmpty() && promptLps.isEmpty()) return;
                    synchronized (obs) {
                        if (obs.isCancelled()) return;
                        GenerateChunk.Builder c = GenerateChunk.newBuilder().setChoiceIndex(choice)
                                .setTextDelta(d.text()).setReasoningDelta(d.reasoning()).addAllToolCalls(d.toolCalls())
                                .addAllLogprobs(lps).addAllPromptLogprobs(promptLps);
                        if (r.getReturnTokenIds()) c.addAllTokenIds(ids);
                        send(c);
                    }
                }
                @Override public void finish(int choice, FinishReason reason, String matchedStop, int completionTokens, int reasoningTokens,
                                             Usage usage, RequestStats stats) {
                    synchronized (obs) {
                        if (obs.isCancelled()) return;
                        GenerateChunk.Builder c = GenerateChunk.newBuilder().setChoiceIndex(choice).setFinishReason(reason).setMatchedStop(matchedStop);
                        if (usage != null) c.setUsage(usage).setStats(stats);
                        send(c);
                        if (usage != null) obs.onCompleted();
                    }
                }
                @Override public void fail(Status s) {
                    synchronized (obs) { if (!obs.isCancelled()) obs.onError(s.asRuntimeException()); }
                }
            });
        } catch (StatusRuntimeException e) {
            out.onError(e);
            return;
        }
        run[0].start();
    }

    @Override
    public void generate(GenerateRequest r, StreamObserver<GenerateResponse> out) {
        GenerateResponse.Builder resp = GenerateResponse.newBuilder();
        RequestRun[] run = new RequestRun[1];
        try {
            run[0] = admission.admit(r, new AnswerSink() {
                final Choice.Builder[] choices = new Choice.Builder[Math.max(1, r.getSampling().getN())];
                { for (int c = 0; c < choices.length; c++) choices[c] = Choice.newBuilder().setIndex(c); }

                @Override public synchronized void delta(int choice, List<Integer> ids, Answer.Delta d, List<TokenLogprob> lps, List<TokenLogprob> promptLps) {
                    if (r.getReturnTokenIds()) choices[choice].addAllTokenIds(ids);
                    choices[choice].addAllLogprobs(lps);
                    resp.addAllPromptLogprobs(promptLps);
                }
                @Override public synchronized void finish(int choice, FinishReason reason, String matchedStop, int completionTokens,
                                                          int reasoningTokens, Usage usage, RequestStats stats) {
                    Answer a = run[0].answers[choice];
                    Choice.Builder c = choices[choice].setText(a.text()).setReasoning(a.reasoning()).setFinishReason(reason)
                            .setMatchedStop(matchedStop).setCompletionTokens(completionTokens).setReasoningTokens(reasoningTokens);
                    if (r.getParseOutput()) c.addAllToolCalls(a.toolCalls());
                    if (usage == null) return;
                    Choice first = choices[0].build();
                    resp.setText(first.getText()).setReasoning(first.getReasoning()).addAllToolCalls(first.getToolCallsList())
                            .addAllTokenIds(first.getTokenIdsList()).addAllLogprobs(first.getLogprobsList())
                            .setFinishReason(first.getFinishReason()).setMatchedStop(first.getMatchedStop());
                    if (r.getReturnTokenIds()) resp.addAllPromptTokenIds(run[0].spec.getPromptTokensList());
                    if (choices.length > 1) for (Choice.Builder b : choices) resp.addChoices(b);
                    out.onNext(resp.setUsage(usage).setStats(stats).build());
                    out.onCompleted();
                }
                @Override public void fail(Status s) { out.onError(s.asRuntimeException()); }
            });
        } catch (StatusRuntimeException e) {
            out.onError(e);
            return;
        }
        resp.setRequestId(run[0].spec.getRequestId());
        run[0].start();
    }

    @Override
    public void tokenize(TokenizeRequest r, StreamObserver<TokenizeResponse> out) {
        try {
            out.onNext(validator.tokenize(r));
            out.onCompleted();
        } catch (StatusRuntimeException e) {
            out.onError(e);
        }
    }

    @Override
    public void getModelInfo(ModelInfoRequest r, StreamObserver<ModelInfo> out) {
        out.onNext(modelInfo.get());
        out.onCompleted();
    }

    @Override
    public void health(HealthRequest r, StreamObserver<HealthResponse> out) {
        out.onNext(health.get());
        out.onCompleted();
    }
}
