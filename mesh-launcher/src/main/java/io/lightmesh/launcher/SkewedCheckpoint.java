package io.lightmesh.launcher;

import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import io.lightmesh.engine.weights.SafeTensorsFile;
import io.lightmesh.engine.weights.SafeTensorsWriter;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * A synthetic checkpoint (random weights, every expert contributing) whose MoE router strongly prefers a few
 * experts per layer, as hot experts do in real MoE traffic: every token embedding gets a large constant component
 * in hidden dimension 0, and the gate rows of the hot experts a large weight on that dimension, so after the norm
 * their logits carry a bonus of several standard deviations and they are chosen for nearly every token.
 */
final class SkewedCheckpoint {
    /** 2 lightning layers, 8 experts, top-2: small and fast, with enough experts to skew (tests). */
    static final SyntheticCheckpoint.Shape SHAPE = new SyntheticCheckpoint.Shape(512, 64, 2, 4, 2, 16, 8, 8, 2, 48, 16);

    private SkewedCheckpoint() {}

    /**
     * @param hot [layer] -> the experts that layer's router prefers
     * @param bonus gate weight on the constant dimension (0.5: the hot experts win nearly always)
     */
    static void write(Path dir, int[][] hot, double bonus) throws IOException {
        write(dir, SHAPE, hot, bonus);
    }

    static void write(Path dir, SyntheticCheckpoint.Shape shape, int[][] hot, double bonus) throws IOException {
        Path tmp = Files.createTempDirectory(dir.toAbsolutePath().getParent(), "skew");
        SyntheticCheckpoint.write(tmp, shape, DType.F32, 21, false);
        final SyntheticCheckpoint.Shape SHAPE = shape;
        int h = SHAPE.hidden(), E = SHAPE.experts();
        SafeTensorsWriter w = new SafeTensorsWriter();
        try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("model.safetensors"))) {
            for (Map.Entry<String, Tensor> t : f.tensors().entrySet()) {
                float[] v = t.getValue().toFloatArray();
                String name = t.getKey();
                if (name.equals("model.embed_tokens.weight")) {
                    for (int tok = 0; tok < SHAPE.vocab(); tok++) v[tok * h] = 8f; // the constant component
                }
                for (int l = 0; l < hot.length; l++) {
                    if (!name.equals("model.layers." + l + ".block_sparse_moe.gate.weight")) continue;
                    for (int e = 0; e < E; e++) v[e * h] = 0f;
                    for (int e : hot[l]) v[e * h] = (float) bonus;
                }
                w.put(name, v, t.getValue().shape());
            }
        }
        Files.createDirectories(dir);
        w.write(dir.resolve("model.safetensors"), DType.F32);
        Files.copy(tmp.resolve("config.json"), dir.resolve("config.json"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Files.delete(tmp.resolve("model.safetensors"));
        Files.delete(tmp.resolve("config.json"));
        Files.delete(tmp);
    }
}
