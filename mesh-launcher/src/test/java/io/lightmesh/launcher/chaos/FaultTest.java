package io.lightmesh.launcher.chaos;

import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The chaos harness's schedule and options: what they parse to, and a clear error for what they cannot. */
class FaultTest {
    @Test
    void aScheduleNamesActionKindVictimAndHold() {
        List<Fault> f = Fault.parse("none, kill-decode:1@4, freeze-expert@30, slow-expert:1@2.5, restart-broker@5", 10_000);
        assertEquals(5, f.size());
        assertEquals(new Fault("none", Fault.Action.NONE, "", 0, 10_000), f.get(0));
        assertEquals(new Fault("kill-decode:1", Fault.Action.KILL, "decode", 1, 4_000), f.get(1));
        assertEquals("decode-1", f.get(1).target());
        assertEquals(new Fault("freeze-expert", Fault.Action.FREEZE, "expert", 0, 30_000), f.get(2));
        assertEquals("expert-0", f.get(2).target());
        assertEquals(2_500, f.get(3).holdMs());
        assertEquals(Fault.Action.SLOW, f.get(3).action());
        assertEquals("broker", f.get(4).target());
        assertTrue(f.stream().noneMatch(Fault::failuresAllowed), "only a killed router may fail requests");
        assertTrue(Fault.parse("kill-router:1", 1).getFirst().failuresAllowed());
        assertFalse(Fault.parse("freeze-router", 1).getFirst().failuresAllowed());
    }

    @Test
    void theFullScheduleCoversEveryKindAndEveryFault() {
        List<Fault> f = Fault.parse(ChaosRun.FULL_SCHEDULE, 10_000);
        for (String kind : List.of("router", "prefill", "decode", "expert")) {
            assertTrue(f.stream().anyMatch(x -> x.action() == Fault.Action.KILL && x.kind().equals(kind)), "kill-" + kind);
        }
        for (Fault.Action a : Fault.Action.values()) assertTrue(f.stream().anyMatch(x -> x.action() == a), a.name());
        assertTrue(f.stream().filter(x -> x.action() == Fault.Action.FREEZE).allMatch(x -> x.holdMs() == 30_000), "30 s partitions");
    }

    @Test
    void badSchedulesAndOptionsAreRefusedWithWhatIsWrong() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Fault.parse("explode-decode", 1)).getMessage().contains("kill, freeze or slow"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Fault.parse("kill-kafka", 1)).getMessage().contains("router, prefill, decode or expert"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Fault.parse(" , ", 1)).getMessage().contains("empty"));
        Path repo = ChaosMeshTest.repo();
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ChaosRun.parse(new String[] {"--bogus", "1"}, repo)).getMessage().contains("unknown option --bogus"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ChaosRun.parse(new String[] {"--requests", "0"}, repo)).getMessage().contains("at least 1"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ChaosRun.parse(new String[] {"--model", "/nowhere"}, repo)).getMessage().contains("no config.json"));
        ChaosRun.Options o = ChaosRun.parse(new String[] {"--requests", "50", "--decodes=3", "--jvm-flags", "-Xmx300m -XX:+UseSerialGC"}, repo);
        assertEquals(50, o.requests());
        assertEquals(3, o.decodes());
        assertEquals(2, o.experts());
        assertEquals(List.of("-Xmx300m", "-XX:+UseSerialGC"), o.jvmFlags());
        assertEquals(ChaosRun.FULL_SCHEDULE, o.schedule());
    }
}
