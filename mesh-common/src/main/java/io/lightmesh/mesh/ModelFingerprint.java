package io.lightmesh.mesh;

import io.lightmesh.engine.weights.WeightStore;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.TreeSet;

/**
 * Identifies a model for compatibility checks between workers: SHA-256 over config.json, tokenizer.json (when
 * present: workers must agree on the text too) and the sorted tensor names with their shapes (cheap; does not
 * read weight bytes). Workers of one mesh must agree.
 */
public final class ModelFingerprint {
    private ModelFingerprint() {}

    public static String of(Path dir, WeightStore weights) throws IOException {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(Files.readAllBytes(dir.resolve("config.json")));
            Path tokenizer = dir.resolve("tokenizer.json");
            if (Files.exists(tokenizer)) md.update(Files.readAllBytes(tokenizer));
            for (String name : new TreeSet<>(weights.names())) {
                md.update(name.getBytes(StandardCharsets.UTF_8));
                md.update(java.util.Arrays.toString(weights.get(name).shape()).getBytes(StandardCharsets.UTF_8));
            }
            return HexFormat.of().formatHex(md.digest(), 0, 12);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
