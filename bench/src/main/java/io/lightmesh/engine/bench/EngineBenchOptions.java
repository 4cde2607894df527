package io.lightmesh.engine.bench;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * {@link EngineBench}'s command line: the model (a preset {@code --size}, single fields overridden by the shape
 * options), the backend, the prompt lengths and decode runs. Flag names and defaults are those of the hand-written
 * parser it replaced, so the command lines recorded in BENCHMARKS.md and tools/gpu still run.
 */
@Command(sortOptions = false, usageHelpWidth = 120,
        description = "The engine's benchmark: prefill throughput per prompt length, decode throughput at batch 1 and "
                + "batch B, against the machine's measured streaming bandwidth and the weight bytes a decoded token reads. "
                + "Runs on a seeded synthetic checkpoint (M1 dialect, lightning block 256), written once into --cache-dir.",
        footer = {"", "Progress goes to stderr, the report (text, or one JSON object with --json) to stdout."})
final class EngineBenchOptions implements BenchCommandLine.Checked {
    static final List<String> SIZES = List.of("tiny", "100m", "demo");
    static final List<String> BACKENDS = List.of("vector", "reference", "opencl", "auto");

    @Option(names = {"-h", "--help"}, usageHelp = true, description = "Show this help and exit.")
    boolean help;
    @Option(names = "--size", paramLabel = "tiny|100m|demo", defaultValue = "100m",
            description = {"Preset shape (default: ${DEFAULT-VALUE}); the shape options override single fields.",
                    "tiny: test model; 100m: ~147M params, vocab 32000, hidden 768, 8 layers, 8 heads x 96, kv 2, "
                            + "8 experts top-2, intermediate 512; demo: hidden 256, 8 layers, 8 heads x 32, kv 2, 8 experts, "
                            + "intermediate 256."})
    String size;
    @Option(names = "--backend", paramLabel = "vector|reference|opencl|auto", defaultValue = "vector",
            description = "Default: ${DEFAULT-VALUE}.")
    String backend;
    @Option(names = "--threads", paramLabel = "N", description = "VectorOps threads and bandwidth threads (default: the cores, ${DEFAULT-VALUE}).")
    int threads = Runtime.getRuntime().availableProcessors();
    @Option(names = "--prompt-lengths", paramLabel = "LEN", split = ",", converter = TokenCount.class,
            description = "Comma list, K = 1024, M = 1048576 (default per preset: tiny 256,1K; else 1K,4K,16K,64K).")
    List<Integer> promptLengths;
    @Option(names = "--decode-tokens", paramLabel = "N", defaultValue = "64",
            description = "Tokens timed per decode run (default: ${DEFAULT-VALUE}); 0 skips decode.")
    int decodeTokens;
    @Option(names = "--decode-logits",
            description = {"Read every row's logits back each decode step and choose the next token on the host (the "
                    + "step of a sampled batch), instead of the greedy step's device argmax (B ints read back)."})
    boolean decodeLogits;
    @Option(names = "--decode-context", paramLabel = "N", defaultValue = "128",
            description = "Prompt prefilled before decoding (default: ${DEFAULT-VALUE}).")
    int decodeContext;
    @Option(names = "--batch", paramLabel = "B", defaultValue = "4",
            description = "Second decode run with B sequences per step (default: ${DEFAULT-VALUE}; 1 skips it).")
    int batch;
    @Option(names = "--repeat", paramLabel = "R", defaultValue = "3",
            description = "Prefill runs per length up to 8K tokens, best kept (default: ${DEFAULT-VALUE}).")
    int repeat;
    @Option(names = "--time-limit-s", paramLabel = "T", defaultValue = "0",
            description = "Stop a prefill after T seconds and extrapolate the rest (default: ${DEFAULT-VALUE}: no limit).")
    int timeLimitSeconds;
    @Option(names = "--bandwidth-mib", paramLabel = "M", defaultValue = "2048",
            description = {"Buffer for the bandwidth measurement (default: ${DEFAULT-VALUE}; 0 skips); sampled between "
                    + "batch-1 decode stretches of 32 steps and 5 times after, best kept."})
    int bandwidthMib;
    @Option(names = "--dtype", paramLabel = "bf16|f16|f32", defaultValue = "bf16", converter = DTypeName.class,
            description = "Weights of the checkpoint (default: ${DEFAULT-VALUE}).")
    DType dtype;
    @Option(names = "--cache-dir", paramLabel = "DIR", description = "Where checkpoints are kept (default: ${DEFAULT-VALUE}).")
    Path cacheDir = Path.of(System.getProperty("user.home"), ".cache", "lightmesh", "bench");
    @Option(names = "--json", description = "The report as one JSON object.")
    boolean json;

    // the shape: each overrides one field of the --size preset (null: the preset's)
    @Option(names = "--vocab", paramLabel = "V", description = "Vocabulary size.") Integer vocab;
    @Option(names = "--hidden", paramLabel = "H", description = "Hidden size.") Integer hidden;
    @Option(names = "--layers", paramLabel = "L", description = "Layers: every 8th softmax attention, the rest lightning.")
    Integer layers;
    @Option(names = "--heads", paramLabel = "H", description = "Attention heads.") Integer heads;
    @Option(names = "--kv-heads", paramLabel = "KV", description = "Key/value heads of the softmax layers; must divide --heads.")
    Integer kvHeads;
    @Option(names = "--head-dim", paramLabel = "D", description = "Head dimension.") Integer headDim;
    @Option(names = "--rotary-dim", paramLabel = "R", description = "Rotary dimension: even, at most --head-dim.") Integer rotaryDim;
    @Option(names = "--experts", paramLabel = "E", description = "Experts per MoE layer.") Integer experts;
    @Option(names = "--top-k", paramLabel = "K", description = "Experts per token: at most --experts.") Integer topK;
    @Option(names = "--intermediate", paramLabel = "I", description = "Expert intermediate size.") Integer intermediate;
    @Option(names = "--seed", paramLabel = "S", defaultValue = "1",
            description = "Seed of the weights and prompts (default: ${DEFAULT-VALUE}).")
    long seed;

    /** Ranges, the preset's prompt lengths when none were given, and the shape's fields fitting together. */
    @Override
    public void check(CommandLine cl) {
        if (!SIZES.contains(size)) throw BenchCommandLine.wrong(cl, "--size: expected tiny, 100m or demo, got '" + size + "'");
        if (!BACKENDS.contains(backend)) {
            throw BenchCommandLine.wrong(cl, "--backend: expected vector, reference, opencl or auto, got '" + backend + "'");
        }
        positive(cl, "--threads", threads);
        positive(cl, "--decode-context", decodeContext);
        positive(cl, "--batch", batch);
        positive(cl, "--repeat", repeat);
        positive(cl, "--seed", seed);
        nonNegative(cl, "--decode-tokens", decodeTokens);
        nonNegative(cl, "--time-limit-s", timeLimitSeconds);
        nonNegative(cl, "--bandwidth-mib", bandwidthMib);
        String[] names = {"--vocab", "--hidden", "--layers", "--heads", "--kv-heads", "--head-dim", "--rotary-dim",
                "--experts", "--top-k", "--intermediate"};
        Integer[] given = {vocab, hidden, layers, heads, kvHeads, headDim, rotaryDim, experts, topK, intermediate};
        for (int i = 0; i < names.length; i++) if (given[i] != null) positive(cl, names[i], given[i]);
        if (promptLengths == null || promptLengths.isEmpty()) {
            promptLengths = size.equals("tiny") ? List.of(256, 1024) : List.of(1024, 4096, 16384, 65536);
        }
        SyntheticCheckpoint.Shape s = shape();
        if (s.heads() % s.kvHeads() != 0) throw BenchCommandLine.wrong(cl, "--kv-heads must divide --heads");
        if (s.topK() > s.experts()) throw BenchCommandLine.wrong(cl, "--top-k exceeds --experts");
        if (s.rotaryDim() > s.headDim() || s.rotaryDim() % 2 != 0) {
            throw BenchCommandLine.wrong(cl, "--rotary-dim must be even and at most --head-dim");
        }
    }

    /** The preset's shape with the fields given on the command line; lightning block 256 (the M1 dialect's). */
    SyntheticCheckpoint.Shape shape() {
        SyntheticCheckpoint.Shape p = switch (size) {
            case "tiny" -> SyntheticCheckpoint.Shape.tiny();
            case "demo" -> new SyntheticCheckpoint.Shape(32000, 256, 8, 8, 2, 32, 16, 8, 2, 256, 256);
            default -> new SyntheticCheckpoint.Shape(32000, 768, 8, 8, 2, 96, 48, 8, 2, 512, 256);
        };
        int d = or(headDim, p.headDim());
        return new SyntheticCheckpoint.Shape(or(vocab, p.vocab()), or(hidden, p.hidden()), or(layers, p.layers()),
                or(heads, p.heads()), or(kvHeads, p.kvHeads()), d, or(rotaryDim, Math.min(p.rotaryDim(), d) / 2 * 2),
                or(experts, p.experts()), or(topK, p.topK()), or(intermediate, p.intermediate()), 256);
    }

    private static int or(Integer given, int preset) { return given != null ? given : preset; }

    private static void positive(CommandLine cl, String flag, long v) {
        if (v <= 0) throw BenchCommandLine.wrong(cl, flag + ": expected a positive integer, got " + v);
    }

    private static void nonNegative(CommandLine cl, String flag, long v) {
        if (v < 0) throw BenchCommandLine.wrong(cl, flag + ": expected a non-negative integer, got " + v);
    }

    /** A token count: digits, optionally ending in K (x 1024) or M (x 1048576); positive and an int. */
    static final class TokenCount implements CommandLine.ITypeConverter<Integer> {
        @Override
        public Integer convert(String value) {
            String u = value.trim().toUpperCase(Locale.ROOT);
            long mult = u.endsWith("K") ? 1024 : u.endsWith("M") ? 1024 * 1024 : 1;
            String digits = mult == 1 ? u : u.substring(0, u.length() - 1);
            try {
                long v = Long.parseLong(digits) * mult;
                if (v <= 0 || v > Integer.MAX_VALUE) throw new NumberFormatException();
                return (int) v;
            } catch (NumberFormatException e) {
                throw new CommandLine.TypeConversionException("expected a token count like 4096 or 64K, got '" + value + "'");
            }
        }
    }

    /** bf16, f16 or f32, any case. */
    static final class DTypeName implements CommandLine.ITypeConverter<DType> {
        @Override
        public DType convert(String value) {
            return switch (value.toLowerCase(Locale.ROOT)) {
                case "bf16" -> DType.BF16;
                case "f16" -> DType.F16;
                case "f32" -> DType.F32;
                default -> throw new CommandLine.TypeConversionException("expected bf16, f16 or f32, got '" + value + "'");
            };
        }
    }
}
