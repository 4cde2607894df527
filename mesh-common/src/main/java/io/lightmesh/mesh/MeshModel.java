package io.lightmesh.mesh;

import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.tokenizer.Tokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A loaded model as every mesh service sees it: the engine model, its fingerprint, and its tokenizer.
 *
 * @param tokenizer from the model directory's tokenizer.json (eos from tokenizer_config.json beside it); null when
 *                  the directory has none: the mesh then takes token ids only, and no eos ends a generation
 */
public record MeshModel(Path dir, MiniMaxModel model, String fingerprint, Tokenizer tokenizer) implements AutoCloseable {

    /** Loads {@code dir} on the backend named by -Dlightmesh.backend / LIGHTMESH_BACKEND (default auto, as the CLI). */
    public static MeshModel load(Path dir) throws IOException {
        return load(dir, Backends.fromEnvironment());
    }

    public static MeshModel load(Path dir, TensorOps ops) throws IOException {
        return load(dir, ops, true);
    }

    /**
     * @param preloadExperts false for a process whose experts live elsewhere (an expert shard holds its own set;
     *                       workers with remote experts): the model's in-process experts are not put on a device
     *                       up front ({@link MiniMaxModel#load(Path, TensorOps, boolean)})
     */
    public static MeshModel load(Path dir, TensorOps ops, boolean preloadExperts) throws IOException {
        MiniMaxModel m = MiniMaxModel.load(dir, ops, preloadExperts);
        try {
            Path tok = dir.resolve("tokenizer.json");
            Tokenizer tokenizer = Files.exists(tok) ? Tokenizer.load(tok) : null;
            if (tokenizer != null && tokenizer.vocabSize() > m.config().vocabSize()) {
                throw new IllegalArgumentException(tok + " has " + tokenizer.vocabSize() + " ids but the model's vocabulary is "
                        + m.config().vocabSize());
            }
            return new MeshModel(dir, m, ModelFingerprint.of(dir, m.weights()), tokenizer);
        } catch (IOException | RuntimeException e) {
            m.close();
            throw e;
        }
    }

    public ModelConfig config() { return model.config(); }

    /** The end-of-sentence id (end of turn) from the tokenizer; -1 when the model has no tokenizer. */
    public int eosId() { return tokenizer == null ? -1 : tokenizer.eosId().orElse(-1); }

    @Override
    public void close() {
        model.close();
        model.ops().close();
    }
}
