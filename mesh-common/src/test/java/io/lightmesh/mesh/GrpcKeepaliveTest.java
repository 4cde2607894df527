package io.lightmesh.mesh;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.lightmesh.proto.v1.DecodeEvent;
import io.lightmesh.proto.v1.DecodeGrpc;
import io.lightmesh.proto.v1.DecodeRequest;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A peer that stops answering while its connection stays open (a process frozen with SIGSTOP, a link that drops
 * packets) is found out by the mesh channels' keepalive: a call in flight fails with UNAVAILABLE within
 * {@link Grpc#KEEPALIVE_MS} + {@link Grpc#KEEPALIVE_TIMEOUT_MS} (and a margin), without a deadline of its own; while
 * the peer answers pings, an idle call in flight is left alone, and the mesh's servers accept the pings (no GOAWAY
 * too_many_pings).
 */
class GrpcKeepaliveTest {
    /** A decode service whose Generate streams never send anything: a call that waits for its state. */
    static final class SilentDecode extends DecodeGrpc.DecodeImplBase {
        @Override
        public void generate(DecodeRequest request, StreamObserver<DecodeEvent> out) { /* never answers */ }
    }

    /** A TCP relay that can stop relaying, both ways, with both sockets left open: a partition. */
    static final class Partition implements AutoCloseable {
        final ServerSocket listen;
        final List<Socket> sockets = new CopyOnWriteArrayList<>();
        volatile boolean cut;

        Partition(int target) throws IOException {
            listen = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
            Thread.ofPlatform().daemon().start(() -> {
                while (!listen.isClosed()) {
                    try {
                        Socket in = listen.accept();
                        Socket out = new Socket(InetAddress.getLoopbackAddress(), target);
                        sockets.add(in);
                        sockets.add(out);
                        pump(in, out);
                        pump(out, in);
                    } catch (IOException e) {
                        return;
                    }
                }
            });
        }

        private void pump(Socket from, Socket to) {
            Thread.ofPlatform().daemon().start(() -> {
                byte[] buf = new byte[8192];
                try (InputStream i = from.getInputStream(); OutputStream o = to.getOutputStream()) {
                    for (int n; (n = i.read(buf)) >= 0; ) {
                        if (!cut) o.write(buf, 0, n); // cut: bytes go nowhere, the sockets stay open
                    }
                } catch (IOException e) {
                    // closed
                }
            });
        }

        int port() { return listen.getLocalPort(); }

        @Override
        public void close() throws IOException {
            listen.close();
            for (Socket s : sockets) s.close();
        }
    }

    @Test
    void aCallToAPeerThatStopsAnsweringFailsWithUnavailableWithinTheKeepaliveBound() throws Exception {
        Server server = Grpc.serve("127.0.0.1", 0, List.of(new SilentDecode()));
        try (Partition link = new Partition(server.getPort())) {
            ManagedChannel ch = Grpc.channel("127.0.0.1:" + link.port());
            try {
                CompletableFuture<Status> ended = new CompletableFuture<>();
                DecodeGrpc.newStub(ch).generate(DecodeRequest.newBuilder().setRequestId("r").build(), new StreamObserver<>() {
                    @Override public void onNext(DecodeEvent e) { }
                    @Override public void onError(Throwable t) { ended.complete(Status.fromThrowable(t)); }
                    @Override public void onCompleted() { ended.complete(Status.OK); }
                });
                // the peer answers: pings go both ways for longer than a keepalive period, and the call stays open
                Thread.sleep(Grpc.KEEPALIVE_MS + Grpc.KEEPALIVE_TIMEOUT_MS + 2_000);
                assertFalse(ended.isDone(), () -> "the call ended while the peer answered: " + ended.join());
                long t0 = System.nanoTime();
                link.cut = true;
                Status s = ended.get(Grpc.KEEPALIVE_MS + Grpc.KEEPALIVE_TIMEOUT_MS + 10_000, TimeUnit.MILLISECONDS);
                long ms = (System.nanoTime() - t0) / 1_000_000;
                assertEquals(Status.Code.UNAVAILABLE, s.getCode(), s.toString());
                assertTrue(ms <= Grpc.KEEPALIVE_MS + Grpc.KEEPALIVE_TIMEOUT_MS + 5_000, "found out after " + ms + " ms");
            } finally {
                Grpc.shutdown(ch);
            }
        } finally {
            Grpc.shutdown(server);
        }
    }
}
