package io.lightmesh.mesh;

import org.junit.jupiter.api.Test;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PeerSetTest {
    /** A DNS stand-in: name to addresses, changed by the test; unknown names answer as NXDOMAIN does. */
    final Map<String, List<String>> records = new ConcurrentHashMap<>();
    final PeerSet.Resolver resolver = name -> {
        List<String> ips = records.get(name);
        if (ips == null) throw new UnknownHostException(name);
        InetAddress[] a = new InetAddress[ips.size()];
        for (int i = 0; i < a.length; i++) a[i] = InetAddress.getByName(ips.get(i));
        return a;
    };

    @Test
    void fixedEntriesStayAsWritten() {
        try (PeerSet p = PeerSet.of(List.of("b:2", " a:1 ", ""), resolver, Duration.ofHours(1))) {
            assertEquals(List.of("a:1", "b:2"), p.get());
            assertFalse(p.discovering());
        }
    }

    @Test
    void everyAddressOfANameWithItsPortFollowedAsItChanges() {
        records.put("decode.svc", List.of("10.0.0.2", "10.0.0.1"));
        List<List<String>> heard = new CopyOnWriteArrayList<>();
        try (PeerSet p = PeerSet.of(List.of("dns:decode.svc:9100", "dns://expert.svc:9200", "fixed:1"), resolver, Duration.ofHours(1))) {
            p.onChange(heard::add);
            assertTrue(p.discovering());
            assertEquals(List.of("10.0.0.1:9100", "10.0.0.2:9100", "fixed:1"), p.get(), "an unknown name is no address, not an error");
            records.put("expert.svc", List.of("10.0.1.1"));
            records.put("decode.svc", List.of("10.0.0.2", "10.0.0.3", "::1"));
            assertEquals(List.of("10.0.0.2:9100", "10.0.0.3:9100", "10.0.1.1:9200", "[0:0:0:0:0:0:0:1]:9100", "fixed:1"), p.refresh());
            assertEquals(1, heard.size());
            p.refresh();
            assertEquals(1, heard.size(), "no change, no notice");
            records.remove("decode.svc");
            assertEquals(List.of("10.0.1.1:9200", "fixed:1"), p.refresh(), "pods gone: dropped");
        }
    }

    @Test
    void resolvedAgainEveryPeriod() throws Exception {
        records.put("d", List.of("10.0.0.1"));
        try (PeerSet p = PeerSet.of(List.of("dns:d:1"), resolver, Duration.ofMillis(20))) {
            records.put("d", List.of("10.0.0.1", "10.0.0.2"));
            long until = System.currentTimeMillis() + 5000;
            while (p.get().size() < 2 && System.currentTimeMillis() < until) Thread.sleep(10);
            assertEquals(List.of("10.0.0.1:1", "10.0.0.2:1"), p.get());
        }
    }

    @Test
    void aFailingResolverKeepsTheAddressesItHad() {
        records.put("d", List.of("10.0.0.1"));
        boolean[] broken = {false};
        PeerSet.Resolver flaky = name -> {
            if (broken[0]) throw new IllegalStateException("resolver down");
            return resolver.resolve(name);
        };
        try (PeerSet p = PeerSet.of(List.of("dns:d:7"), flaky, Duration.ofHours(1))) {
            broken[0] = true;
            assertEquals(List.of("10.0.0.1:7"), p.refresh());
        }
    }

    @Test
    void badEntriesAreNamed() {
        var e = assertThrows(IllegalArgumentException.class, () -> PeerSet.of(List.of("dns:nameonly"), resolver, Duration.ofHours(1)));
        assertTrue(e.getMessage().contains("dns:nameonly"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> PeerSet.of(List.of("host:99999"), resolver, Duration.ofHours(1)));
        assertTrue(e.getMessage().contains("99999"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PeerSet.of(List.of("nohost"), resolver, Duration.ofHours(1)));
    }
}
