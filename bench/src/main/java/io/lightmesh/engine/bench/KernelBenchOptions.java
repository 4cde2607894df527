package io.lightmesh.engine.bench;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;

/** {@link KernelBench}'s command line: which sections, how many repetitions, full or {@code --quick} sizes. */
@Command(sortOptions = false, usageHelpWidth = 120,
        description = "Times the OpenCL kernels at model scale (kernel time from profiling events, and the whole "
                + "TensorOps call with its copies) and prints one table.")
final class KernelBenchOptions implements BenchCommandLine.Checked {
    static final List<String> SECTIONS = List.of("matmul", "gemm", "matvec", "lightning", "decode", "attention", "resident");
    /** Sections run only when named: decode3 (the decode kernels v2 against v3). */
    static final List<String> NAMED_ONLY = List.of("decode3");

    @Option(names = {"-h", "--help"}, usageHelp = true, description = "Show this help and exit.")
    boolean help;
    @Option(names = "--quick", description = "Shrink every case: a smoke test for PoCL.")
    boolean quick;
    @Option(names = "--reps", paramLabel = "N", defaultValue = "5",
            description = "Timed repetitions per case, the median kept (default: ${DEFAULT-VALUE}).")
    int reps;
    @Option(names = "--only", paramLabel = "SECTION", split = ",",
            description = "Sections to run, of: matmul, gemm, matvec, lightning, decode, attention, resident (default: all), "
                    + "and decode3 (only when named).")
    List<String> only = new ArrayList<>(SECTIONS);

    @Override
    public void check(CommandLine cl) {
        if (reps <= 0) throw BenchCommandLine.wrong(cl, "--reps: expected a positive integer, got " + reps);
        for (String s : only) {
            if (!SECTIONS.contains(s) && !NAMED_ONLY.contains(s)) {
                throw BenchCommandLine.wrong(cl, "--only: unknown section '" + s + "' (expected " + String.join(", ", SECTIONS)
                        + ", " + String.join(", ", NAMED_ONLY) + ")");
            }
        }
    }
}
