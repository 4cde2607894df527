package io.lightmesh.engine.bench;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** EngineBench's command line through picocli: help, typos, bad values, the old flags and defaults. */
class EngineBenchCommandLineTest {
    /** What one command line printed and returned; wrong command lines return before any model is written. */
    record Run(int code, String out, String err) {}

    static Run run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        int code = EngineBench.run("lightmesh bench", args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    static EngineBenchOptions parse(String... args) {
        EngineBenchOptions o = new EngineBenchOptions();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        Integer code = BenchCommandLine.parse("bench", o, args, System.out, new PrintStream(err, true, StandardCharsets.UTF_8));
        assertNull(code, err.toString(StandardCharsets.UTF_8));
        return o;
    }

    @Test
    void helpListsEveryFlagAndExitsZero() {
        for (String h : List.of("--help", "-h")) {
            Run r = run(h);
            assertEquals(0, r.code(), r.err());
            assertTrue(r.out().startsWith("Usage: lightmesh bench"), r.out());
            for (String f : List.of("--size", "--backend", "--threads", "--prompt-lengths", "--decode-tokens", "--decode-context",
                    "--batch", "--repeat", "--time-limit-s", "--bandwidth-mib", "--dtype", "--cache-dir", "--json", "--vocab",
                    "--hidden", "--layers", "--heads", "--kv-heads", "--head-dim", "--rotary-dim", "--experts", "--top-k",
                    "--intermediate", "--seed")) {
                assertTrue(r.out().contains(f), f + " missing from:\n" + r.out());
            }
            assertTrue(r.out().contains("(default: 64)"), "defaults are shown:\n" + r.out());
        }
    }

    @Test
    void aTypoGetsTheNearestFlagAndExitsTwo() {
        Run r = run("--size", "tiny", "--decode-token", "8");
        assertEquals(2, r.code());
        assertTrue(r.err().startsWith("lightmesh bench: Unknown option") && r.err().contains("'--decode-token'"), r.err());
        assertTrue(r.err().contains("--decode-tokens"), "the suggestion: " + r.err());
        assertTrue(r.err().contains("run 'lightmesh bench --help' for usage"), r.err());
        assertEquals("", r.out());
    }

    @Test
    void badNumbersAndChoicesSayWhichFlagAndExitTwo() {
        record Case(List<String> args, String expected) {}
        for (Case c : List.of(
                new Case(List.of("--decode-tokens", "many"), "'many' is not an int"),
                new Case(List.of("--batch", "0"), "--batch: expected a positive integer, got 0"),
                new Case(List.of("--bandwidth-mib=-1"), "--bandwidth-mib: expected a non-negative integer, got -1"),
                new Case(List.of("--prompt-lengths", "1K,lots"), "expected a token count like 4096 or 64K, got 'lots'"),
                new Case(List.of("--prompt-lengths", "0"), "got '0'"),
                new Case(List.of("--size", "huge"), "--size: expected tiny, 100m or demo, got 'huge'"),
                new Case(List.of("--backend", "quantum"), "--backend: expected vector, reference, opencl or auto, got 'quantum'"),
                new Case(List.of("--dtype", "int4"), "expected bf16, f16 or f32, got 'int4'"),
                new Case(List.of("--heads", "8", "--kv-heads", "3"), "--kv-heads must divide --heads"),
                new Case(List.of("--experts", "2", "--top-k", "3"), "--top-k exceeds --experts"),
                new Case(List.of("--rotary-dim", "7"), "--rotary-dim must be even and at most --head-dim"),
                new Case(List.of("--threads"), "Missing required parameter"),
                new Case(List.of("stray"), "Unmatched argument at index 0: 'stray'"))) {
            Run r = run(c.args().toArray(String[]::new));
            assertEquals(2, r.code(), c.args() + ": " + r.err());
            assertTrue(r.err().startsWith("lightmesh bench: "), r.err());
            assertTrue(r.err().contains(c.expected()), c.args() + " -> " + r.err());
        }
    }

    @Test
    void defaultsAreTheOldParsersDefaults() {
        EngineBenchOptions o = parse();
        assertEquals("100m", o.size);
        assertEquals("vector", o.backend);
        assertEquals(Runtime.getRuntime().availableProcessors(), o.threads);
        assertEquals(List.of(1024, 4096, 16384, 65536), o.promptLengths);
        assertEquals(64, o.decodeTokens);
        assertEquals(128, o.decodeContext);
        assertEquals(4, o.batch);
        assertEquals(3, o.repeat);
        assertEquals(2048, o.bandwidthMib);
        assertEquals(0, o.timeLimitSeconds);
        assertEquals(1, o.seed);
        assertEquals(DType.BF16, o.dtype);
        assertTrue(o.cacheDir.endsWith(".cache/lightmesh/bench"), o.cacheDir.toString());
        assertEquals(new SyntheticCheckpoint.Shape(32000, 768, 8, 8, 2, 96, 48, 8, 2, 512, 256), o.shape());
        assertEquals(List.of(256, 1024), parse("--size", "tiny").promptLengths);
    }

    @Test
    void theRecordedCommandLinesStillParse() {
        // the 1.25B M1 shape of the H200 figures (BENCHMARKS.md, ENGINE=...) with the arguments of run-gpu.sh engine
        EngineBenchOptions o = parse("--backend", "opencl", "--size", "100m", "--vocab", "32000", "--hidden", "2048",
                "--layers", "16", "--heads", "16", "--kv-heads", "4", "--head-dim", "128", "--rotary-dim", "64", "--experts", "8",
                "--top-k", "2", "--intermediate", "1024", "--prompt-lengths", "1K,4K", "--decode-tokens", "256", "--batch", "8",
                "--bandwidth-mib", "0", "--repeat", "2");
        assertEquals(new SyntheticCheckpoint.Shape(32000, 2048, 16, 16, 4, 128, 64, 8, 2, 1024, 256), o.shape());
        assertEquals(List.of(1024, 4096), o.promptLengths);
        assertEquals("opencl", o.backend);
        // the 1M CPU run, --json, --opt=value, the last of a repeated flag, any dtype case
        o = parse("--size", "demo", "--backend", "vector", "--prompt-lengths", "1M", "--time-limit-s", "10200",
                "--decode-tokens=16", "--batch", "1", "--bandwidth-mib", "0", "--repeat", "1", "--repeat", "2", "--dtype", "F32", "--json");
        assertEquals(List.of(1 << 20), o.promptLengths);
        assertEquals(10200, o.timeLimitSeconds);
        assertEquals(16, o.decodeTokens);
        assertEquals(2, o.repeat);
        assertEquals(DType.F32, o.dtype);
        assertTrue(o.json);
        // a head dim below the preset's rotary dim: rotary follows it down, as before
        assertEquals(32, parse("--head-dim", "32").shape().rotaryDim());
    }
}
