package io.lightmesh.mesh;

import io.grpc.MethodDescriptor;
import io.lightmesh.proto.v1.ExpertBatch;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.ExpertResult;

import java.io.InputStream;
import java.util.concurrent.atomic.LongAdder;

/**
 * The worker's end of Expert.ComputeStream: the generated method with its answers' parse timed (it runs on the
 * transport thread, where a caller's timer cannot see it). The bytes on the wire are the generated marshallers'.
 */
final class ExpertWire {
    private final LongAdder parseNanos = new LongAdder();
    private final MethodDescriptor<ExpertBatch, ExpertResult> computeStream;

    ExpertWire() {
        MethodDescriptor<ExpertBatch, ExpertResult> generated = ExpertGrpc.getComputeStreamMethod();
        MethodDescriptor.Marshaller<ExpertResult> parse = generated.getResponseMarshaller();
        computeStream = generated.toBuilder(generated.getRequestMarshaller(), new MethodDescriptor.Marshaller<ExpertResult>() {
            @Override public InputStream stream(ExpertResult value) { return parse.stream(value); }

            @Override public ExpertResult parse(InputStream stream) {
                long t0 = System.nanoTime();
                try {
                    return parse.parse(stream);
                } finally {
                    parseNanos.add(System.nanoTime() - t0);
                }
            }
        }).build();
    }

    MethodDescriptor<ExpertBatch, ExpertResult> computeStream() { return computeStream; }

    /** Nanoseconds spent parsing answers since the last reset. */
    long parseNanos() { return parseNanos.sum(); }

    void resetStats() { parseNanos.reset(); }
}
