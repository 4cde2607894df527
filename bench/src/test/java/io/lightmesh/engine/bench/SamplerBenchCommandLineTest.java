package io.lightmesh.engine.bench;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** SamplerBench's command line through picocli: its defaults, and a wrong value refused with its reason and exit 2. */
class SamplerBenchCommandLineTest {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();

    private Integer parse(SamplerBench.Options o, String... args) {
        return BenchCommandLine.parse("SamplerBench", o, args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    @Test
    void defaultsAndFlags() {
        SamplerBench.Options o = new SamplerBench.Options();
        assertNull(parse(o));
        assertEquals(List.of(32000, 200064), o.vocab, "the bench shape's vocabulary and MiniMax-M1's");
        assertEquals(8, o.batch);
        assertEquals(21, o.reps);
        o = new SamplerBench.Options();
        assertNull(parse(o, "--vocab", "1000", "--batch", "0", "--reps", "3", "--sigma", "0.5"));
        assertEquals(List.of(1000), o.vocab);
        assertEquals(0, o.batch);
        assertEquals(0.5, o.sigma);
    }

    @Test
    void wrongValuesSayWhyAndExitTwo() {
        for (String[] args : new String[][]{{"--reps", "0"}, {"--vocab", "0"}, {"--batch", "-1"}, {"--sigma", "0"}}) {
            err.reset();
            assertEquals(2, parse(new SamplerBench.Options(), args), String.join(" ", args));
            String e = err.toString(StandardCharsets.UTF_8);
            assertTrue(e.startsWith("SamplerBench: " + args[0]) && e.contains("run 'SamplerBench --help' for usage"), e);
        }
    }
}
