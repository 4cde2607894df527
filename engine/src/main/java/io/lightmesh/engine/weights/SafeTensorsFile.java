package io.lightmesh.engine.weights;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One .safetensors file, memory-mapped whole through the FFM API (so files over 2 GiB are one segment) and read in
 * place: {@code [u64 little-endian header length][JSON header][raw tensor bytes]}.
 */
public final class SafeTensorsFile implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path path;
    private final Arena arena;
    private final Map<String, Tensor> tensors = new LinkedHashMap<>();

    private SafeTensorsFile(Path path, Arena arena) {
        this.path = path;
        this.arena = arena;
    }

    public static SafeTensorsFile open(Path path) throws IOException {
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw new IOException(path + ": truncated safetensors file (" + size + " bytes, no header)");
            MemorySegment file = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long headerLen = file.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
            if (headerLen <= 0 || 8 + headerLen > size) {
                throw new IOException(path + ": truncated or corrupt safetensors file (header of " + headerLen
                        + " bytes in a file of " + size + ")");
            }
            byte[] header = file.asSlice(8, headerLen).toArray(ValueLayout.JAVA_BYTE);
            JsonNode root = JSON.readTree(new String(header, StandardCharsets.UTF_8));
            long dataStart = 8 + headerLen;
            SafeTensorsFile st = new SafeTensorsFile(path, arena);
            for (Iterator<Map.Entry<String, JsonNode>> it = root.properties().iterator(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                if (e.getKey().equals("__metadata__")) continue;
                String name = e.getKey();
                JsonNode t = e.getValue();
                DType dtype = DType.fromSafetensors(t.path("dtype").asText(), name);
                JsonNode shapeNode = t.path("shape");
                long[] shape = new long[shapeNode.size()];
                for (int i = 0; i < shape.length; i++) shape[i] = shapeNode.get(i).asLong();
                long begin = t.path("data_offsets").get(0).asLong();
                long end = t.path("data_offsets").get(1).asLong();
                if (dataStart + end > size) {
                    throw new IOException(path + ": truncated file: tensor " + name + " ends at byte " + (dataStart + end)
                            + " but the file has " + size + " bytes");
                }
                st.tensors.put(name, new Tensor(name, dtype, shape, file.asSlice(dataStart + begin, end - begin)));
            }
            return st;
        } catch (IOException | RuntimeException e) {
            arena.close();
            if (e instanceof IOException io) throw io;
            throw new IOException(path + ": " + e.getMessage(), e);
        }
    }

    public Path path() { return path; }

    public Map<String, Tensor> tensors() { return tensors; }

    @Override
    public void close() { arena.close(); }
}
