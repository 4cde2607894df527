package io.lightmesh.launcher;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The services' and benchmarks' command lines: picocli parsing, typo suggestions, help, exit codes. */
class FlagsTest {
    static final String[] KNOWN = {"model", "max-batch", "max-in-flight", "api-key"};

    static Flags parse(String... args) { return new Flags("serve", "The mesh.", System.out, args, 0, KNOWN); }

    @Test
    void valuesInBothFormsAndTheLastWins() {
        Flags f = parse("--model", "m1", "--max-batch=8", "--model", "m2");
        assertEquals("m2", f.get("model", null));
        assertEquals(8, f.getInt("max-batch", 0));
        assertEquals(Map.of("model", "m2", "max-batch", "8"), f.given());
        assertEquals(5, f.getInt("max-in-flight", 5), "unset (and not in the environment): the fallback");
    }

    @Test
    void anUnknownFlagIsAUsageErrorNamingItWithTheNearestKnownOne() {
        UsageException e = assertThrows(UsageException.class, () -> parse("--max-bach", "8"));
        assertEquals(2, e.exitCode());
        assertTrue(e.getMessage().contains("--max-bach"), e.getMessage());
        assertTrue(e.getMessage().contains("--max-batch"), "suggests the near name: " + e.getMessage());
        assertTrue(e.getMessage().contains("--help"), e.getMessage());
    }

    @Test
    void aMissingValueAndABadNumberAreUsageErrors() {
        UsageException missing = assertThrows(UsageException.class, () -> parse("--model"));
        assertTrue(missing.getMessage().contains("--model"), missing.getMessage());
        UsageException notInt = assertThrows(UsageException.class, () -> parse("--max-batch", "many").getInt("max-batch", 1));
        assertTrue(notInt.getMessage().contains("must be an integer"), notInt.getMessage());
        assertEquals(2, notInt.exitCode());
    }

    @Test
    void helpPrintsEveryFlagWithItsVariableAndEndsWithExitZero() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        UsageException e = assertThrows(UsageException.class,
                () -> new Flags("serve", "The mesh.", new PrintStream(out, true, StandardCharsets.UTF_8), new String[]{"--help"}, 0, KNOWN));
        assertTrue(e.helpShown());
        assertEquals(0, e.exitCode());
        String usage = out.toString(StandardCharsets.UTF_8);
        for (String k : KNOWN) assertTrue(usage.contains("--" + k) && usage.contains(Flags.env(k)), usage);
        assertTrue(usage.contains("The mesh."), usage);
    }

    @Test
    void integerLists() {
        assertArrayEquals(new int[]{1, 16}, new Flags("b", null, System.out, new String[]{"--batches", "1, 16"}, 0, "batches").ints("batches", null));
        assertThrows(UsageException.class, () -> new Flags("b", null, System.out, new String[]{"--batches", "1,x"}, 0, "batches").ints("batches", null));
    }

    @Test
    void anUnknownCommandGetsTheNearestOne() {
        UsageException e = assertThrows(UsageException.class, () -> Main.run(new String[]{"serv"}));
        assertEquals(2, e.exitCode());
        assertTrue(e.getMessage().contains("unknown command 'serv'") && e.getMessage().contains("serve"), e.getMessage());
    }

    @Test
    void serveRefusesAnUnknownFlagBeforeStartingAnything() {
        UsageException e = assertThrows(UsageException.class, () -> Main.run(new String[]{"serve", "--grpc-prot", "9000"}));
        assertTrue(e.getMessage().contains("--grpc-port"), e.getMessage());
    }
}
