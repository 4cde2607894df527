package io.lightmesh.mesh;

import io.grpc.BindableService;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.DescribeRequest;
import io.lightmesh.proto.v1.ExpertBatch;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.ExpertResult;
import io.lightmesh.proto.v1.WorkerGrpc;
import io.lightmesh.proto.v1.WorkerInfo;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.stream.LongStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What the services' Quarkus applications put between Quarkus's gRPC server and the plain service classes:
 * {@link DeferredServices} (UNAVAILABLE until the worker is built) and {@link OffloadingInterceptor} (handlers off
 * the server's thread, in order, with the call's context); and the OTEL_* defaults of {@link OtelConfigSource}.
 * The server here runs its callbacks on its own single thread, as Quarkus's event loop would.
 */
class QuarkusGlueTest {
    private final ExecutorService transport = Executors.newSingleThreadExecutor(r -> new Thread(r, "transport"));
    private final ExecutorService handlers = Executors.newFixedThreadPool(4, r -> new Thread(r, "handler"));
    private Server server;
    private ManagedChannel channel;

    private void serve(io.grpc.ServerServiceDefinition... services) throws Exception {
        String name = InProcessServerBuilder.generateName();
        InProcessServerBuilder b = InProcessServerBuilder.forName(name).executor(transport);
        for (var s : services) b.addService(s);
        server = b.build().start();
        channel = InProcessChannelBuilder.forName(name).build();
    }

    @AfterEach
    void stop() {
        if (channel != null) channel.shutdownNow();
        if (server != null) server.shutdownNow();
        transport.shutdownNow();
        handlers.shutdownNow();
    }

    /** Worker.Describe answering with the thread it ran on and whether the call's deadline was visible there. */
    static final class DescribeThread extends WorkerGrpc.WorkerImplBase {
        @Override
        public void describe(DescribeRequest req, StreamObserver<WorkerInfo> out) {
            out.onNext(WorkerInfo.newBuilder().setWorkerId(Thread.currentThread().getName())
                    .setAddress(String.valueOf(Context.current().getDeadline() != null)).build());
            out.onCompleted();
        }
    }

    @Test
    void deferredServicesAnswerUnavailableUntilPublished() throws Exception {
        DeferredServices deferred = new DeferredServices();
        serve(deferred.bind(WorkerGrpc.getServiceDescriptor()));
        var stub = WorkerGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS);
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> stub.describe(DescribeRequest.getDefaultInstance()));
        assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("starting"), e.getStatus().getDescription());
        assertTrue(!deferred.ready());

        deferred.publish(new DescribeThread().bindService());
        deferred.markReady();
        assertTrue(deferred.ready());
        assertEquals("transport", stub.describe(DescribeRequest.getDefaultInstance()).getWorkerId());
    }

    @Test
    void offloadedHandlersRunOnTheExecutorWithTheCallsContext() throws Exception {
        serve(ServerInterceptors.intercept(new DescribeThread(), new OffloadingInterceptor(handlers)));
        WorkerInfo w = WorkerGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance());
        assertEquals("handler", w.getWorkerId());
        assertEquals("true", w.getAddress(), "the call's deadline is current in the offloaded handler");
    }

    @Test
    void offloadedStreamMessagesArriveInOrderAndOneAtATime() throws Exception {
        List<Long> seen = new CopyOnWriteArrayList<>();
        int[] concurrent = {0, 0};
        BindableService echo = new ExpertGrpc.ExpertImplBase() {
            @Override
            public StreamObserver<ExpertBatch> computeStream(StreamObserver<ExpertResult> out) {
                return new StreamObserver<>() {
                    @Override public void onNext(ExpertBatch b) {
                        synchronized (concurrent) { concurrent[0]++; concurrent[1] = Math.max(concurrent[1], concurrent[0]); }
                        Thread.yield();
                        seen.add(b.getCallId());
                        synchronized (concurrent) { concurrent[0]--; }
                        out.onNext(ExpertResult.newBuilder().setCallId(b.getCallId()).build());
                    }
                    @Override public void onError(Throwable t) {}
                    @Override public void onCompleted() { out.onCompleted(); }
                };
            }
        };
        serve(ServerInterceptors.intercept(echo, new OffloadingInterceptor(handlers)));
        List<Long> back = new CopyOnWriteArrayList<>();
        CountDownLatch done = new CountDownLatch(1);
        StreamObserver<ExpertBatch> in = ExpertGrpc.newStub(channel).computeStream(new StreamObserver<>() {
            @Override public void onNext(ExpertResult r) { back.add(r.getCallId()); }
            @Override public void onError(Throwable t) { done.countDown(); }
            @Override public void onCompleted() { done.countDown(); }
        });
        for (long i = 0; i < 500; i++) in.onNext(ExpertBatch.newBuilder().setCallId(i).build());
        in.onCompleted();
        assertTrue(done.await(10, TimeUnit.SECONDS));
        List<Long> expected = LongStream.range(0, 500).boxed().toList();
        assertEquals(expected, seen);
        assertEquals(expected, back);
        assertEquals(1, concurrent[1], "one message of a call at a time");
    }

    @Test
    void aHandlerThatThrowsEndsItsCallWithUnknown() throws Exception {
        BindableService failing = new WorkerGrpc.WorkerImplBase() {
            @Override
            public void describe(DescribeRequest req, StreamObserver<WorkerInfo> out) { throw new IllegalStateException("broken worker"); }
        };
        serve(ServerInterceptors.intercept(failing, new OffloadingInterceptor(handlers)));
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> WorkerGrpc.newBlockingStub(channel)
                .withDeadlineAfter(5, TimeUnit.SECONDS).describe(DescribeRequest.getDefaultInstance()));
        assertEquals(Status.Code.UNKNOWN, e.getStatus().getCode());
        assertNotNull(e.getStatus().getDescription());
        assertTrue(e.getStatus().getDescription().contains("broken worker"), e.getStatus().getDescription());
    }

    @Test
    void otelVariablesBecomeQuarkusDefaults() {
        Map<String, String> off = OtelConfigSource.defaults(Map.<String, String>of()::get);
        assertEquals(Map.of("quarkus.otel.sdk.disabled", "true"), off);
        Map<String, String> on = OtelConfigSource.defaults(Map.of("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OTEL_SERVICE_NAME", "router-a")::get);
        assertEquals("false", on.get("quarkus.otel.sdk.disabled"));
        assertEquals("http://collector:4318", on.get("quarkus.otel.exporter.otlp.endpoint"));
        assertEquals("http/protobuf", on.get("quarkus.otel.exporter.otlp.protocol"));
        assertEquals("router-a", on.get("quarkus.otel.service.name"));
        OtelConfigSource source = new OtelConfigSource(Map.of("OTEL_EXPORTER_OTLP_ENDPOINT", " ")::get);
        assertEquals("true", source.getValue("quarkus.otel.sdk.disabled"), "a blank endpoint is no endpoint");
        assertNotEquals(0, source.getOrdinal());
    }
}
