package io.lightmesh.engine.weights;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lightmesh.engine.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * All tensors of a checkpoint directory, single-file ({@code model.safetensors}) or sharded
 * ({@code model.safetensors.index.json} naming the shard of every tensor, a file in the same folder). Tensors stay
 * mapped until {@link #close()}. A checkpoint that cannot be read is an {@link IOException} naming the file.
 */
public final class WeightStore implements AutoCloseable {
    private final List<SafeTensorsFile> files = new ArrayList<>();
    private final Map<String, Tensor> byName = new HashMap<>();

    private WeightStore() {}

    public static WeightStore open(Path dir) throws IOException {
        WeightStore ws = new WeightStore();
        try {
            Path index = dir.resolve("model.safetensors.index.json");
            Path single = dir.resolve("model.safetensors");
            if (Files.exists(index)) {
                JsonNode map = new ObjectMapper().readTree(index.toFile()).path("weight_map");
                Map<String, SafeTensorsFile> shards = new HashMap<>();
                for (Iterator<Map.Entry<String, JsonNode>> it = map.properties().iterator(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    String shard = shardName(e.getValue(), e.getKey(), index);
                    SafeTensorsFile f = shards.get(shard);
                    if (f == null) {
                        Path p = dir.resolve(shard);
                        if (!Files.exists(p)) throw new IOException("shard " + shard + " named by " + index + " for tensor " + e.getKey() + " is missing");
                        f = SafeTensorsFile.open(p);
                        shards.put(shard, f);
                        ws.files.add(f);
                    }
                    Tensor t = f.tensors().get(e.getKey());
                    if (t == null) throw new IOException("tensor " + e.getKey() + " is listed in " + index + " but absent from " + shard);
                    ws.byName.put(e.getKey(), t);
                }
            } else if (Files.exists(single)) {
                SafeTensorsFile f = SafeTensorsFile.open(single);
                ws.files.add(f);
                ws.byName.putAll(f.tensors());
            } else {
                throw new IOException(dir + ": no model.safetensors or model.safetensors.index.json");
            }
            return ws;
        } catch (IOException | RuntimeException e) {
            ws.close();
            throw e;
        }
    }

    /**
     * The shard file an index entry names: a plain file name in the checkpoint folder (as Hugging Face writes them), never
     * a path that could reach outside it.
     */
    private static String shardName(JsonNode value, String tensor, Path index) throws IOException {
        String shard = value.isTextual() ? value.asText() : "";
        if (shard.isEmpty() || shard.equals(".") || shard.equals("..") || shard.indexOf('/') >= 0 || shard.indexOf('\\') >= 0
                || shard.indexOf('\0') >= 0) {
            throw new IOException(index + ": tensor " + tensor + " names shard " + value + "; expected a file name in the checkpoint folder");
        }
        return shard;
    }

    /** The tensor named {@code name}; a missing one is an error naming it. */
    public Tensor get(String name) {
        Tensor t = byName.get(name);
        if (t == null) throw new IllegalArgumentException("checkpoint is missing tensor " + name);
        return t;
    }

    /** The tensor, checked to have exactly {@code shape}; the error names the tensor and both shapes. */
    public Tensor get(String name, long... shape) {
        Tensor t = get(name);
        t.checkShape(shape);
        return t;
    }

    public boolean contains(String name) { return byName.containsKey(name); }

    public Set<String> names() { return byName.keySet(); }

    @Override
    public void close() {
        for (SafeTensorsFile f : files) f.close();
        files.clear();
    }
}
