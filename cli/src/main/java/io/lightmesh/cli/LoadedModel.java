package io.lightmesh.cli;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.tokenizer.Tokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** A model directory opened for a command: weights on a backend, and the tokenizer when the directory has one. */
record LoadedModel(Path dir, MiniMaxModel model, Tokenizer tokenizer) implements AutoCloseable {

    static LoadedModel open(Path dir, TensorOps ops) throws IOException {
        if (!Files.isDirectory(dir)) throw new UsageException("--model " + dir + ": not a directory");
        if (!Files.exists(dir.resolve("config.json"))) throw new UsageException("--model " + dir + ": no config.json");
        MiniMaxModel model;
        // a large checkpoint takes a while to map and check: say so on a terminal
        try (Progress p = checkpointBytes(dir) >= LARGE_BYTES ? Progress.of("loading " + dir.getFileName() + " ("
                + checkpointBytes(dir) / (1 << 20) + " MiB)") : null) {
            model = MiniMaxModel.load(dir, ops);
        }
        Path tok = dir.resolve("tokenizer.json");
        Tokenizer tokenizer = Files.exists(tok) ? Tokenizer.load(tok) : null;
        return new LoadedModel(dir, model, tokenizer);
    }

    /** Checkpoints from this size on get a progress note while they load. */
    static final long LARGE_BYTES = 256L << 20;

    /** The bytes of the checkpoint's safetensors files. */
    static long checkpointBytes(Path dir) throws IOException {
        try (var files = Files.list(dir)) {
            long sum = 0;
            for (Path f : files.filter(f -> f.getFileName().toString().endsWith(".safetensors")).toList()) sum += Files.size(f);
            return sum;
        }
    }

    Tokenizer requireTokenizer() {
        if (tokenizer == null) throw new UsageException(dir + " has no tokenizer.json: pass token ids (--ids) instead of text");
        return tokenizer;
    }

    @Override
    public void close() {
        model.close();
        try { model.ops().close(); } catch (Exception ignored) { }
    }
}
