package io.lightmesh.mesh;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.MiniMaxModel;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A loaded model as every mesh service sees it: the engine model, its fingerprint and its end-of-sentence id.
 *
 * @param eosId from generation_config.json or config.json ("eos_token_id"); -1 when neither names one
 */
public record MeshModel(Path dir, MiniMaxModel model, String fingerprint, int eosId) implements AutoCloseable {

    public static MeshModel load(Path dir) throws IOException {
        return load(dir, new ReferenceOps());
    }

    public static MeshModel load(Path dir, TensorOps ops) throws IOException {
        MiniMaxModel m = MiniMaxModel.load(dir, ops);
        return new MeshModel(dir, m, ModelFingerprint.of(dir, m.weights()), eosId(dir));
    }

    public ModelConfig config() { return model.config(); }

    private static int eosId(Path dir) throws IOException {
        ObjectMapper json = new ObjectMapper();
        for (String f : new String[]{"generation_config.json", "config.json"}) {
            Path p = dir.resolve(f);
            if (!Files.exists(p)) continue;
            JsonNode eos = json.readTree(p.toFile()).path("eos_token_id");
            if (eos.isInt()) return eos.asInt();
            if (eos.isArray() && !eos.isEmpty()) return eos.get(0).asInt();
        }
        return -1;
    }

    @Override
    public void close() { model.close(); }
}
