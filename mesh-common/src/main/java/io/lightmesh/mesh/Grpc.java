package io.lightmesh.mesh;

import io.grpc.BindableService;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.netty.shaded.io.netty.handler.ssl.ClientAuth;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * gRPC between the mesh's services over Netty, sized for state hand-offs (64 MiB messages at most; chunks are 1 MiB):
 * plaintext, or mutual TLS when {@link MeshTls} settings are present ({@code LIGHTMESH_TLS_*}). Every channel and
 * server carries the W3C trace context of the calls ({@link MeshTelemetry}).
 */
public final class Grpc {
    public static final int MAX_MESSAGE_BYTES = 64 << 20;

    /**
     * Liveness of the peer of a call in flight: with a call open and nothing read for {@link #KEEPALIVE_MS}, the
     * channel sends an HTTP/2 PING, and a peer that does not answer it within {@link #KEEPALIVE_TIMEOUT_MS} is taken
     * as gone: the transport closes and every call on it fails with UNAVAILABLE. A frozen or partitioned worker is so
     * found out in at most about 15 s, though its socket stays open (a process stopped with SIGSTOP, a peer behind a
     * dropped link); a slow one still answers pings. 10 s is grpc-java's shortest keepalive time.
     */
    public static final long KEEPALIVE_MS = 10_000, KEEPALIVE_TIMEOUT_MS = 5_000;

    /** The most frequent pings a server of the mesh accepts (its clients send them every {@link #KEEPALIVE_MS}). */
    public static final long PERMIT_KEEPALIVE_MS = 1_000;

    /** The process's mesh TLS, read once from the environment; null for plaintext. */
    private static volatile MeshTls tls = MeshTls.fromEnvironment().orElse(null);

    private Grpc() {}

    /**
     * The transport Netty gives the mesh's channels and servers: its native epoll one where the library loads (Linux;
     * grpc-netty-shaded carries it, and picks it by default), else NIO, with why. Said in the expert shard's start-up line.
     */
    public static String transport() {
        try {
            if (io.grpc.netty.shaded.io.netty.channel.epoll.Epoll.isAvailable()) return "netty epoll";
            Throwable why = io.grpc.netty.shaded.io.netty.channel.epoll.Epoll.unavailabilityCause();
            return "netty nio (epoll unavailable: " + (why == null ? "?" : why.toString()) + ")";
        } catch (LinkageError e) {
            return "netty nio (no epoll classes: " + e + ")";
        }
    }

    /** Mutual TLS for every channel and server made from now on (null: plaintext). For tests and embedders. */
    public static void useTls(MeshTls settings) { tls = settings; }

    /** The mesh TLS in use; empty for plaintext. */
    public static java.util.Optional<MeshTls> tls() { return java.util.Optional.ofNullable(tls); }

    /** A channel to "host:port". */
    public static ManagedChannel channel(String target) {
        return secured(NettyChannelBuilder.forTarget(target)).maxInboundMessageSize(MAX_MESSAGE_BYTES)
                .intercept(MeshTelemetry.clientInterceptor()).build();
    }

    /**
     * A channel whose callbacks run on the transport thread itself (no hand-off to an executor): for the expert hot
     * path, where a callback only completes a future.
     */
    public static ManagedChannel directChannel(String target) {
        return secured(NettyChannelBuilder.forTarget(target)).maxInboundMessageSize(MAX_MESSAGE_BYTES).directExecutor()
                .intercept(MeshTelemetry.clientInterceptor()).build();
    }

    private static NettyChannelBuilder secured(NettyChannelBuilder b) {
        b.keepAliveTime(KEEPALIVE_MS, TimeUnit.MILLISECONDS).keepAliveTimeout(KEEPALIVE_TIMEOUT_MS, TimeUnit.MILLISECONDS)
                .keepAliveWithoutCalls(false);
        MeshTls t = tls;
        return t == null ? b.usePlaintext() : b.sslContext(t.clientContext());
    }

    /** Starts a server on host:port (port 0: any free port; read it back from {@link Server#getPort()}). */
    public static Server serve(String host, int port, List<BindableService> services) throws IOException {
        return serve(host, port, services, false);
    }

    /**
     * @param direct handlers run on the transport thread (no executor hand-off): for services whose calls are short
     *               and arrive one at a time per connection (expert shards)
     */
    public static Server serve(String host, int port, List<BindableService> services, boolean direct) throws IOException {
        return serve(host, port, services, direct, ClientAuth.REQUIRE);
    }

    /**
     * The router's public server: with TLS on, a client certificate is asked for but not required (outside clients
     * have none; the API key authenticates them).
     */
    public static Server servePublic(String host, int port, List<BindableService> services) throws IOException {
        return serve(host, port, services, false, ClientAuth.OPTIONAL);
    }

    private static Server serve(String host, int port, List<BindableService> services, boolean direct, ClientAuth clientAuth) throws IOException {
        NettyServerBuilder b = NettyServerBuilder.forAddress(new InetSocketAddress(host, port)).maxInboundMessageSize(MAX_MESSAGE_BYTES)
                .permitKeepAliveTime(PERMIT_KEEPALIVE_MS, TimeUnit.MILLISECONDS).permitKeepAliveWithoutCalls(true);
        MeshTls t = tls;
        if (t != null) b.sslContext(t.serverContext(clientAuth));
        if (direct) b.directExecutor();
        for (BindableService s : services) b.addService(traced(s));
        return b.build().start();
    }

    /**
     * As {@link #serve(String, int, List, boolean)} with {@code direct}, on an event loop of its own (one thread: epoll
     * where available, else NIO) instead of the process's shared one: for a server whose handlers may compute on the
     * transport thread (an expert shard's decode batches, {@code lightmesh.shard.inlineDecode}), which then holds up
     * only this server's own connections, never another service's or channel's that shares a loop thread with it. The
     * loop ends once the server has terminated.
     */
    public static Server serveOnOwnLoop(String host, int port, List<BindableService> services, String name) throws IOException {
        boolean epoll = io.grpc.netty.shaded.io.netty.channel.epoll.Epoll.isAvailable();
        java.util.concurrent.ThreadFactory threads = r -> {
            Thread t = new Thread(r, name + "-loop");
            t.setDaemon(true);
            return t;
        };
        io.grpc.netty.shaded.io.netty.channel.EventLoopGroup loop = epoll
                ? new io.grpc.netty.shaded.io.netty.channel.epoll.EpollEventLoopGroup(1, threads)
                : new io.grpc.netty.shaded.io.netty.channel.nio.NioEventLoopGroup(1, threads);
        NettyServerBuilder b = NettyServerBuilder.forAddress(new InetSocketAddress(host, port)).maxInboundMessageSize(MAX_MESSAGE_BYTES)
                .permitKeepAliveTime(PERMIT_KEEPALIVE_MS, TimeUnit.MILLISECONDS).permitKeepAliveWithoutCalls(true)
                .bossEventLoopGroup(loop).workerEventLoopGroup(loop).directExecutor()
                .channelType(epoll ? io.grpc.netty.shaded.io.netty.channel.epoll.EpollServerSocketChannel.class
                        : io.grpc.netty.shaded.io.netty.channel.socket.nio.NioServerSocketChannel.class);
        MeshTls t = tls;
        if (t != null) b.sslContext(t.serverContext(ClientAuth.REQUIRE));
        for (BindableService s : services) b.addService(traced(s));
        Server server;
        try {
            server = b.build().start();
        } catch (IOException | RuntimeException e) {
            loop.shutdownGracefully(0, 1, TimeUnit.SECONDS);
            throw e;
        }
        Thread.ofVirtual().name(name + "-loop-reaper").start(() -> {
            try {
                server.awaitTermination();
            } catch (InterruptedException ignored) {
                // the process is going: the loop's daemon thread goes with it
            }
            loop.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        });
        return server;
    }

    /** {@code service} with the trace context of its calls made current ({@link MeshTelemetry#serverInterceptor()}). */
    public static ServerServiceDefinition traced(BindableService service) {
        return ServerInterceptors.intercept(service, MeshTelemetry.serverInterceptor());
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
