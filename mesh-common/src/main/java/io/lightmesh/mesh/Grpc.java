package io.lightmesh.mesh;

import io.grpc.BindableService;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Plaintext gRPC over Netty, sized for state hand-offs (64 MiB messages at most; chunks are 1 MiB). */
public final class Grpc {
    public static final int MAX_MESSAGE_BYTES = 64 << 20;

    private Grpc() {}

    /** A channel to "host:port". */
    public static ManagedChannel channel(String target) {
        return NettyChannelBuilder.forTarget(target).usePlaintext().maxInboundMessageSize(MAX_MESSAGE_BYTES).build();
    }

    /** Starts a server on host:port (port 0: any free port; read it back from {@link Server#getPort()}). */
    public static Server serve(String host, int port, List<BindableService> services) throws IOException {
        NettyServerBuilder b = NettyServerBuilder.forAddress(new InetSocketAddress(host, port)).maxInboundMessageSize(MAX_MESSAGE_BYTES);
        for (BindableService s : services) b.addService(s);
        return b.build().start();
    }

    public static void shutdown(Server server) {
        if (server == null) return;
        server.shutdown();
        try {
            if (!server.awaitTermination(2, TimeUnit.SECONDS)) server.shutdownNow();
        } catch (InterruptedException e) {
            server.shutdownNow();
            Thread.currentThread().interrupt();
        }
    }

    public static void shutdown(ManagedChannel ch) {
        if (ch == null) return;
        ch.shutdownNow();
    }
}
