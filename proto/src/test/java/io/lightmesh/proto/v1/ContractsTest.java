package io.lightmesh.proto.v1;

import com.google.protobuf.ByteString;
import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileDescriptorSet;
import com.google.protobuf.DescriptorProtos.SourceCodeInfo;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ContractsTest {

    /** Every message, field, enum, enum value, service and rpc of lightmesh.v1 carries a leading comment. */
    @Test
    void everyDeclarationIsCommented() throws Exception {
        FileDescriptorSet set;
        try (InputStream in = getClass().getResourceAsStream("/lightmesh/v1/lightmesh-v1.desc")) {
            assertNotNull(in, "descriptor set not bundled");
            set = FileDescriptorSet.parseFrom(in);
        }
        List<String> undocumented = new ArrayList<>();
        for (FileDescriptorProto f : set.getFileList()) {
            assertEquals("lightmesh.v1", f.getPackage(), f.getName());
            Set<String> commented = new HashSet<>();
            for (SourceCodeInfo.Location loc : f.getSourceCodeInfo().getLocationList())
                if (!loc.getLeadingComments().isBlank() || !loc.getTrailingComments().isBlank())
                    commented.add(loc.getPathList().toString());
            // Paths: message_type = 4, field = 2, nested enum = 4; enum_type = 5, value = 2; service = 6, method = 2.
            for (int m = 0; m < f.getMessageTypeCount(); m++) {
                check(commented, undocumented, f.getName() + " " + f.getMessageType(m).getName(), List.of(4, m));
                for (int i = 0; i < f.getMessageType(m).getFieldCount(); i++) {
                    String name = f.getMessageType(m).getName() + "." + f.getMessageType(m).getField(i).getName();
                    // Fields declared as a group under one comment ("int32 num_heads = 7; int32 num_kv_heads = 8;")
                    // count as commented when the first of the run is.
                    if (!commented.contains(List.of(4, m, 2, i).toString()) && i > 0
                            && commented.contains(List.of(4, m, 2, i - 1).toString())
                            && groupedWithPrevious(f, m, i)) {
                        commented.add(List.of(4, m, 2, i).toString());
                    }
                    check(commented, undocumented, f.getName() + " " + name, List.of(4, m, 2, i));
                }
            }
            for (int e = 0; e < f.getEnumTypeCount(); e++) {
                check(commented, undocumented, f.getName() + " " + f.getEnumType(e).getName(), List.of(5, e));
                for (int v = 0; v < f.getEnumType(e).getValueCount(); v++)
                    check(commented, undocumented, f.getName() + " " + f.getEnumType(e).getValue(v).getName(), List.of(5, e, 2, v));
            }
            for (int s = 0; s < f.getServiceCount(); s++) {
                check(commented, undocumented, f.getName() + " " + f.getService(s).getName(), List.of(6, s));
                for (int r = 0; r < f.getService(s).getMethodCount(); r++)
                    check(commented, undocumented, f.getName() + " " + f.getService(s).getMethod(r).getName(), List.of(6, s, 2, r));
            }
        }
        assertTrue(undocumented.isEmpty(), "undocumented: " + undocumented);
    }

    /** True when field i directly follows field i-1 with no blank line or comment between (a commented group). */
    private static boolean groupedWithPrevious(FileDescriptorProto f, int m, int i) {
        SourceCodeInfo.Location prev = null, cur = null;
        for (SourceCodeInfo.Location loc : f.getSourceCodeInfo().getLocationList()) {
            if (loc.getPathList().equals(List.of(4, m, 2, i - 1))) prev = loc;
            if (loc.getPathList().equals(List.of(4, m, 2, i))) cur = loc;
        }
        return prev != null && cur != null && cur.getSpan(0) == prev.getSpan(0) + 1
                && cur.getLeadingDetachedCommentsCount() == 0;
    }

    private static void check(Set<String> commented, List<String> undocumented, String what, List<Integer> path) {
        if (!commented.contains(path.toString())) undocumented.add(what);
    }

    /** The generated stubs work over gRPC: client streaming with a trailer-checked ack. */
    @Test
    void stateTransferStubRoundTrip() throws Exception {
        String name = InProcessServerBuilder.generateName();
        Server server = InProcessServerBuilder.forName(name).directExecutor().addService(new StateTransferGrpc.StateTransferImplBase() {
            @Override
            public StreamObserver<StateChunk> send(StreamObserver<StateAck> ack) {
                return new StreamObserver<>() {
                    String id; long bytes;
                    @Override public void onNext(StateChunk c) {
                        switch (c.getPartCase()) {
                            case HEADER -> id = c.getHeader().getRequestId();
                            case DATA -> bytes += c.getData().size();
                            case TRAILER -> assertEquals(bytes, c.getTrailer().getTotalBytes());
                            default -> throw new IllegalStateException();
                        }
                    }
                    @Override public void onError(Throwable t) {}
                    @Override public void onCompleted() {
                        ack.onNext(StateAck.newBuilder().setRequestId(id).setStatus(AckStatus.ACK_STATUS_ACCEPTED).setBytesReceived(bytes).build());
                        ack.onCompleted();
                    }
                };
            }
        }).build().start();
        ManagedChannel ch = InProcessChannelBuilder.forName(name).directExecutor().build();
        try {
            StateAck[] got = new StateAck[1];
            StreamObserver<StateChunk> out = StateTransferGrpc.newStub(ch).send(new StreamObserver<>() {
                @Override public void onNext(StateAck a) { got[0] = a; }
                @Override public void onError(Throwable t) { throw new AssertionError(t); }
                @Override public void onCompleted() {}
            });
            out.onNext(StateChunk.newBuilder().setHeader(StateHeader.newBuilder().setRequestId("r1").setTotalBytes(10)).build());
            out.onNext(StateChunk.newBuilder().setData(ByteString.copyFrom(new byte[6])).build());
            out.onNext(StateChunk.newBuilder().setData(ByteString.copyFrom(new byte[4])).build());
            out.onNext(StateChunk.newBuilder().setTrailer(StateTrailer.newBuilder().setTotalBytes(10).setChunks(2)).build());
            out.onCompleted();
            assertEquals("r1", got[0].getRequestId());
            assertEquals(AckStatus.ACK_STATUS_ACCEPTED, got[0].getStatus());
            assertEquals(10, got[0].getBytesReceived());
        } finally {
            ch.shutdownNow();
            server.shutdownNow();
        }
    }
}
