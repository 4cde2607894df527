package io.lightmesh.mesh;

import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Supplier;
import java.util.logging.Logger;

/**
 * The peers of a service (decode workers, expert shards) as a live list of {@code host:port} addresses, built from
 * a list of entries of two kinds:
 * <ul>
 *   <li>{@code host:port}: a fixed peer, kept as written (bare machines, {@code serve});</li>
 *   <li>{@code dns:name:port}: every address the name resolves to, each with that port, resolved again every
 *       period. In Kubernetes the name is a headless Service ({@code lightmesh-decode.ns.svc.cluster.local}), whose
 *       A/AAAA records are the ready pods: a pod that a Deployment adds joins at the next resolution, one that goes
 *       away is dropped.</li>
 * </ul>
 * {@link #get()} is the current list (sorted, no duplicates); listeners hear of every change. A name that does not
 * resolve (no pod ready yet: NXDOMAIN) counts as no address, not as an error. The resolver is pluggable for tests;
 * the default is the JVM's ({@code InetAddress.getAllByName}, which caches answers for
 * {@code networkaddress.cache.ttl} seconds: 30 by default, so the images set {@code -Dsun.net.inetaddr.ttl=5}).
 */
public final class PeerSet implements Supplier<List<String>>, AutoCloseable {
    private static final Logger LOG = Logger.getLogger(PeerSet.class.getName());
    /** The prefix of an entry resolved through DNS. */
    public static final String DNS = "dns:";
    public static final Duration DEFAULT_PERIOD = Duration.ofSeconds(5);

    /** Name to addresses; an unknown name answers {@link UnknownHostException}. */
    @FunctionalInterface
    public interface Resolver {
        InetAddress[] resolve(String name) throws UnknownHostException;

        Resolver SYSTEM = InetAddress::getAllByName;
    }

    /** One entry of the list: fixed, or a name and port to resolve. */
    private record Entry(String fixed, String name, int port) {}

    private final List<Entry> entries;
    private final Resolver resolver;
    private final List<Consumer<List<String>>> listeners = new CopyOnWriteArrayList<>();
    private final ScheduledExecutorService timer; // null when every entry is fixed
    private volatile List<String> current = List.of();

    private PeerSet(List<Entry> entries, Resolver resolver, Duration period) {
        this.entries = List.copyOf(entries);
        this.resolver = resolver;
        refresh();
        if (entries.stream().anyMatch(e -> e.fixed == null)) {
            timer = Executors.newSingleThreadScheduledExecutor(r -> {
                Thread t = new Thread(r, "peer-discovery");
                t.setDaemon(true);
                return t;
            });
            long ms = Math.max(1, period.toMillis());
            timer.scheduleWithFixedDelay(this::refreshQuietly, ms, ms, TimeUnit.MILLISECONDS);
        } else {
            timer = null;
        }
    }

    /** The peers of these entries ({@code host:port} or {@code dns:name:port}), DNS names resolved every period. */
    public static PeerSet of(List<String> entries, Resolver resolver, Duration period) {
        List<Entry> parsed = new ArrayList<>();
        for (String raw : entries) {
            String s = raw.trim();
            if (s.isEmpty()) continue;
            if (s.startsWith(DNS)) {
                String rest = s.substring(DNS.length());
                if (rest.startsWith("//")) rest = rest.substring(2); // dns://name:port, as gRPC writes it
                int colon = rest.lastIndexOf(':');
                if (colon <= 0) throw new IllegalArgumentException("discovery entry '" + raw + "': want dns:name:port");
                parsed.add(new Entry(null, rest.substring(0, colon), port(raw, rest.substring(colon + 1))));
            } else {
                int colon = s.lastIndexOf(':');
                if (colon <= 0) throw new IllegalArgumentException("peer '" + raw + "': want host:port or dns:name:port");
                port(raw, s.substring(colon + 1));
                parsed.add(new Entry(s, null, 0));
            }
        }
        return new PeerSet(parsed, resolver, period);
    }

    /** {@link #of(List, Resolver, Duration)} with the JVM's resolver and {@link #DEFAULT_PERIOD}. */
    public static PeerSet of(List<String> entries) { return of(entries, Resolver.SYSTEM, DEFAULT_PERIOD); }

    private static int port(String raw, String p) {
        try {
            int port = Integer.parseInt(p);
            if (port > 0 && port < 65536) return port;
        } catch (NumberFormatException ignored) { }
        throw new IllegalArgumentException("peer '" + raw + "': port '" + p + "' is not a number in 1..65535");
    }

    /** Whether any entry is resolved through DNS (the list may change). */
    public boolean discovering() { return timer != null; }

    @Override
    public List<String> get() { return current; }

    /** Called with the new list after every change (on the discovery thread, or the caller of {@link #refresh}). */
    public void onChange(Consumer<List<String>> listener) { listeners.add(listener); }

    /** Resolves the names now; returns the current list. A failing resolver keeps the previous addresses of that name. */
    public synchronized List<String> refresh() {
        Set<String> next = new LinkedHashSet<>();
        for (Entry e : entries) {
            if (e.fixed != null) { next.add(e.fixed); continue; }
            try {
                for (InetAddress a : resolver.resolve(e.name)) next.add(hostPort(a, e.port));
            } catch (UnknownHostException notThere) {
                // no ready pod behind the headless Service: no address
            } catch (RuntimeException ex) {
                LOG.warning("discovery of " + e.name + " failed (" + ex + "); keeping its previous addresses");
                String suffix = ":" + e.port;
                for (String old : current) if (old.endsWith(suffix)) next.add(old);
            }
        }
        List<String> sorted = next.stream().sorted().toList();
        if (!sorted.equals(current)) {
            List<String> before = current;
            current = sorted;
            if (discovering()) LOG.info("peers " + describe() + ": " + before + " -> " + sorted);
            for (Consumer<List<String>> l : listeners) {
                try {
                    l.accept(sorted);
                } catch (RuntimeException ex) {
                    LOG.warning("peer listener failed: " + ex);
                }
            }
        }
        return sorted;
    }

    private void refreshQuietly() {
        try {
            refresh();
        } catch (Throwable t) {
            LOG.warning("peer discovery failed: " + t);
        }
    }

    private static String hostPort(InetAddress a, int port) {
        String h = a.getHostAddress();
        return (a instanceof Inet6Address ? "[" + h + "]" : h) + ":" + port;
    }

    /** The entries as configured, for logs and health details. */
    public String describe() {
        return entries.stream().map(e -> e.fixed != null ? e.fixed : DNS + e.name + ":" + e.port).toList().toString();
    }

    @Override
    public void close() {
        if (timer != null) timer.shutdownNow();
    }
}
