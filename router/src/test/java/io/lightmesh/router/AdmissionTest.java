package io.lightmesh.router;

import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerateRequest;
import io.lightmesh.proto.v1.RequestStats;
import io.lightmesh.proto.v1.SamplingParams;
import io.lightmesh.proto.v1.TokenIds;
import io.lightmesh.proto.v1.TokenLogprob;
import io.lightmesh.proto.v1.Usage;
import io.opentelemetry.api.OpenTelemetry;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The router's door without Kafka or workers: what is counted in flight, the RESOURCE_EXHAUSTED refusal and its
 * retry-after trailer, validation before counting, the request id and the client's deadline in the spec. Runs are
 * admitted, never started (a run through a real mesh: mesh-launcher's MeshEndToEndTest and OverloadTest).
 */
class AdmissionTest {
    private static final RouterCore.Settings SETTINGS = new RouterCore.Settings("unused:9092", "requests", 1, "prefill",
            List.of(), List.of(), 2, 256, 200, 2, 1000);

    private final RouterMetrics metrics = new RouterMetrics(OpenTelemetry.noop());
    /** No decode worker described: no state budget known, so none is refused for its size. */
    private final WorkerDirectory workers = new WorkerDirectory(SETTINGS, List::of, List::of, null, null);
    private final Admission admission = new Admission(DemoModel.validator(200, RequestLimits.defaults()),
            new Prompts(DemoModel.TOKENIZER, "demo"), SETTINGS.maxInFlight(),
            new RequestRun.Mesh(workers, null, metrics, new LogprobText(DemoModel.TOKENIZER), DemoModel.CONFIG,
                    OpenTelemetry.noop().getTracer("test"), SETTINGS.maxResumes()));

    private static final AnswerSink NOWHERE = new AnswerSink() {
        @Override public void delta(int choice, List<Integer> ids, Answer.Delta delta, List<TokenLogprob> logprobs, List<TokenLogprob> promptLogprobs) {}
        @Override public void finish(int choice, FinishReason reason, String matchedStop, int completionTokens, int reasoningTokens, Usage usage, RequestStats stats) {}
        @Override public void fail(Status status) {}
    };

    private static GenerateRequest.Builder prompt(String id) {
        return GenerateRequest.newBuilder().setRequestId(id).setTokenIds(TokenIds.newBuilder().addIds(5).addIds(6).addIds(7));
    }

    @Test
    void requestsBeyondMaxInFlightAreRefusedAtOnceWithRetryAfter() {
        admission.admit(prompt("a").build(), NOWHERE);
        admission.admit(prompt("b").build(), NOWHERE);
        assertEquals(2, metrics.inFlight.get());
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> admission.admit(prompt("c").build(), NOWHERE));
        assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
        assertEquals("admission queue full (2 requests in flight); retry later", e.getStatus().getDescription());
        assertEquals("1", e.getTrailers().get(RouterCore.RETRY_AFTER));
        assertEquals(2, metrics.inFlight.get(), "the refused one is not counted");
    }

    @Test
    void anInvalidRequestIsRefusedBeforeItIsCounted() {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> admission.admit(GenerateRequest.newBuilder().build(), NOWHERE));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
        assertEquals(0, metrics.inFlight.get());
    }

    @Test
    void aRunCarriesItsIdItsChoicesAndTheClientsDeadline() throws Exception {
        RequestRun run = admission.admit(prompt("r1").setSampling(SamplingParams.newBuilder().setN(3)).build(), NOWHERE);
        assertEquals("r1", run.spec.getRequestId());
        assertEquals(3, run.choices);
        assertEquals(0, run.spec.getDeadlineUnixMs(), "no deadline asked");

        RequestRun unnamed = admission.admit(GenerateRequest.newBuilder().setTokenIds(TokenIds.newBuilder().addIds(5)).build(), NOWHERE);
        assertFalse(unnamed.spec.getRequestId().isEmpty(), "an id is made for a request without one");

        ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
        try {
            long before = System.currentTimeMillis();
            RequestRun timed = Context.current().withDeadlineAfter(30, TimeUnit.SECONDS, timer).call(() -> {
                metrics.inFlight.set(0);
                return admission.admit(prompt("r2").build(), NOWHERE);
            });
            long deadline = timed.spec.getDeadlineUnixMs();
            assertTrue(deadline >= before + 29_000 && deadline <= System.currentTimeMillis() + 30_000, "deadline " + deadline);
        } finally {
            timer.shutdownNow();
        }
    }
}
