package io.lightmesh.launcher;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Writes one of the benches' synthetic checkpoints into a folder, once, so that several bench runs on one machine
 * (bench-serve with experts in-process and on shards, at concurrency 1 and 16) load the same model with
 * {@code --model DIR} instead of each writing its own (the 1.25B-parameter {@code 1b} shape takes ~30 s to write).
 * Shapes: bench-serve's (tiny, medium, small, 100m) and shard-bench's {@code 1b} (the M1 shape of the H200 figures).
 *
 * <p>Usage: {@code SyntheticModelWriter --shape 1b --dtype bf16 [--seed 1] DIR}; DIR with a config.json already is
 * left as it is.
 */
public final class SyntheticModelWriter {
    private SyntheticModelWriter() {}

    public static void main(String[] args) throws IOException {
        String shape = "tiny", dtype = "f32";
        long seed = 1;
        Path dir = null;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) {
                if (dir != null) throw usage("one folder only, got " + dir + " and " + a);
                dir = Path.of(a);
                continue;
            }
            if (i + 1 >= args.length) throw usage(a + " needs a value");
            String v = args[++i];
            switch (a) {
                case "--shape" -> shape = v;
                case "--dtype" -> dtype = v;
                case "--seed" -> seed = Long.parseLong(v);
                default -> throw usage("unknown option " + a);
            }
        }
        if (dir == null) throw usage("the folder to write is missing");
        System.out.println(write(dir, shape(shape), dtype(dtype), seed));
    }

    /**
     * Writes the checkpoint into {@code dir} (via a sibling temp folder and a rename, so a half-written folder is
     * never taken for a model) unless it holds a config.json already; returns a line saying which.
     */
    static String write(Path dir, SyntheticCheckpoint.Shape shape, DType dtype, long seed) throws IOException {
        if (Files.exists(dir.resolve("config.json"))) return "model: reusing " + dir;
        Path abs = dir.toAbsolutePath();
        Path tmp = abs.resolveSibling(abs.getFileName() + ".tmp-" + ProcessHandle.current().pid());
        long t0 = System.nanoTime();
        SyntheticCheckpoint.write(tmp, shape, dtype, seed, false);
        Files.move(tmp, abs);
        return String.format(Locale.ROOT, "model: wrote a %.1fM-parameter %s checkpoint to %s in %.1f s",
                shape.parameters() / 1e6, dtype, dir, (System.nanoTime() - t0) / 1e9);
    }

    static SyntheticCheckpoint.Shape shape(String name) {
        return "1b".equals(name) ? ShardDecodeBench.shape(name) : BenchServe.shape(name);
    }

    static DType dtype(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "f32" -> DType.F32;
            case "bf16" -> DType.BF16;
            default -> throw usage("--dtype f32|bf16, got " + name);
        };
    }

    private static IllegalArgumentException usage(String why) {
        return new IllegalArgumentException(why + "\nusage: SyntheticModelWriter --shape tiny|medium|small|100m|1b --dtype f32|bf16 [--seed N] DIR");
    }
}
