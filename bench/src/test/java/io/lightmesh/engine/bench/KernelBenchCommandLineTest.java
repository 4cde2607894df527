package io.lightmesh.engine.bench;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** KernelBench's command line through picocli (parsed before any OpenCL device is opened). */
class KernelBenchCommandLineTest {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();

    private Integer parse(KernelBenchOptions o, String... args) {
        return BenchCommandLine.parse("KernelBench", o, args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    @Test
    void defaultsAndTheRecordedFlags() {
        KernelBenchOptions o = new KernelBenchOptions();
        assertNull(parse(o));
        assertFalse(o.quick);
        assertEquals(5, o.reps);
        assertEquals(KernelBenchOptions.SECTIONS, o.only);
        o = new KernelBenchOptions();
        assertNull(parse(o, "--only", "matmul", "--reps", "4", "--quick"), err.toString(StandardCharsets.UTF_8));
        assertEquals(List.of("matmul"), o.only, "--only replaces the default sections");
        assertEquals(4, o.reps);
        assertTrue(o.quick);
        o = new KernelBenchOptions();
        assertNull(parse(o, "--only", "decode,resident"));
        assertEquals(List.of("decode", "resident"), o.only);
        o = new KernelBenchOptions();
        assertNull(parse(o, "--only", "decode3"));
        assertEquals(List.of("decode3"), o.only, "decode3 runs only when named");
        assertFalse(KernelBenchOptions.SECTIONS.contains("decode3"));
    }

    @Test
    void help() {
        assertEquals(0, parse(new KernelBenchOptions(), "--help"));
        String usage = out.toString(StandardCharsets.UTF_8);
        assertTrue(usage.startsWith("Usage: KernelBench") && usage.contains("--only") && usage.contains("--reps")
                && usage.contains("--quick"), usage);
    }

    @Test
    void wrongCommandLinesSayWhyAndExitTwo() {
        assertEquals(2, parse(new KernelBenchOptions(), "--rep", "3"));
        String e = err.toString(StandardCharsets.UTF_8);
        assertTrue(e.startsWith("KernelBench: Unknown option") && e.contains("'--rep'") && e.contains("--reps")
                && e.contains("run 'KernelBench --help' for usage"), e);
        err.reset();
        assertEquals(2, parse(new KernelBenchOptions(), "--reps", "x"));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("'x' is not an int"), err.toString(StandardCharsets.UTF_8));
        err.reset();
        assertEquals(2, parse(new KernelBenchOptions(), "--reps", "0"));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("--reps: expected a positive integer, got 0"));
        err.reset();
        assertEquals(2, parse(new KernelBenchOptions(), "--only", "matmul,gemv"));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("--only: unknown section 'gemv'"), err.toString(StandardCharsets.UTF_8));
    }
}
