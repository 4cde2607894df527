package io.lightmesh.router;

import io.grpc.Context;
import io.grpc.Metadata;
import io.grpc.Status;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.mesh.Specs;
import io.lightmesh.mesh.StateCodec;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.GenerationSpec;

import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * The router's door: a request is validated (INVALID_ARGUMENT naming the field or limit), refused at once when no
 * decode worker could ever hold its state (OUT_OF_RANGE) or when {@code maxInFlight} requests are in flight already
 * (RESOURCE_EXHAUSTED with a retry-after trailer), and otherwise becomes a {@link RequestRun}, counted in flight until
 * it is done.
 */
final class Admission {
    /** Trailer {@code retry-after} (seconds) of a refusal for load, as HTTP's Retry-After header says it. */
    static final Metadata.Key<String> RETRY_AFTER = Metadata.Key.of("retry-after", Metadata.ASCII_STRING_MARSHALLER);

    private final RequestValidator validator;
    private final Prompts prompts;
    private final int maxInFlight;
    private final RequestRun.Mesh mesh;

    Admission(RequestValidator validator, Prompts prompts, int maxInFlight, RequestRun.Mesh mesh) {
        this.validator = validator;
        this.prompts = prompts;
        this.maxInFlight = maxInFlight;
        this.mesh = mesh;
    }

    /** Admits a request whose output goes to {@code sink}; the run is the caller's to {@link RequestRun#start}. */
    RequestRun admit(GenerateRequest r, AnswerSink sink) {
        String id = r.getRequestId().isEmpty() ? UUID.randomUUID().toString() : r.getRequestId();
        GenerationSpec spec = validator.validate(r, id);
        long deadline = Context.current().getDeadline() == null ? 0
                : System.currentTimeMillis() + Context.current().getDeadline().timeRemaining(TimeUnit.MILLISECONDS);
        spec = spec.toBuilder().setDeadlineUnixMs(deadline).build();
        refuseIfNoDecodeWorkerCanHold(spec);
        if (mesh.metrics().inFlight.incrementAndGet() > maxInFlight) {
            mesh.metrics().inFlight.decrementAndGet();
            throw Status.RESOURCE_EXHAUSTED.withDescription("admission queue full (" + maxInFlight + " requests in flight); retry later")
                    .asRuntimeException(retryAfter());
        }
        int think = prompts.thinkOpenId();
        boolean inReasoning = think >= 0 && spec.getPromptTokens(spec.getPromptTokensCount() - 1) == think;
        Answer[] answers = new Answer[Specs.choices(spec)];
        for (int c = 0; c < answers.length; c++) answers[c] = new Answer(c == 0 ? id : id + "_" + c, r.getParseOutput(), inReasoning);
        return new RequestRun(mesh, spec, ConversationKey.of(r, id), answers, sink);
    }

    /**
     * A request whose state at its longest (prompt plus max tokens, a copy per choice; what the prefill worker reserves)
     * exceeds the state budget of every decode worker known could never be placed: its record would wait on Kafka for
     * room that never comes. It is refused at once with OUT_OF_RANGE (HTTP 400) naming both sizes. Before the first
     * poll (no budget known) nothing is refused.
     */
    private void refuseIfNoDecodeWorkerCanHold(GenerationSpec spec) {
        long largest = mesh.workers().largestDecodeBudget();
        if (largest <= 0) return;
        ModelConfig config = mesh.config();
        long need = StateCodec.serialisedBytes(config, spec.getPromptTokensCount() + (long) spec.getSampling().getMaxNewTokens())
                * Specs.choices(spec);
        if (need > largest) {
            throw Status.OUT_OF_RANGE.withDescription("the request needs " + need + " bytes of decode state (prompt of " + spec.getPromptTokensCount()
                    + " tokens plus max " + spec.getSampling().getMaxNewTokens() + " new, " + Specs.choices(spec)
                    + " choice(s)); the largest decode worker holds " + largest + " bytes (lightmesh.budget-gib): ask for fewer tokens").asRuntimeException();
        }
    }

    private static Metadata retryAfter() {
        Metadata m = new Metadata();
        m.put(RETRY_AFTER, "1");
        return m;
    }
}
