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
 * place: {@code [u64 little-endian header length][JSON header][raw tensor bytes]}. A file that breaks the format (a
 * header over 100 MB, an entry without dtype, shape or data_offsets, offsets outside the file, a shape that does not
 * match its bytes) fails with an {@link IOException} naming the file and the tensor.
 */
public final class SafeTensorsFile implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** The safetensors format's own bound on the JSON header (the reference implementation refuses larger ones). */
    static final long MAX_HEADER_BYTES = 100_000_000;

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
            if (headerLen > MAX_HEADER_BYTES) {
                throw new IOException(path + ": safetensors header of " + headerLen + " bytes exceeds the format's limit of " + MAX_HEADER_BYTES);
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
                if (!t.isObject()) throw new IOException(path + ": tensor " + name + ": header entry is not an object");
                DType dtype = DType.fromSafetensors(t.path("dtype").asText(), name);
                long[] shape = longs(t.path("shape"), -1, path, name, "shape");
                long[] offsets = longs(t.path("data_offsets"), 2, path, name, "data_offsets");
                long begin = offsets[0], end = offsets[1];
                if (begin > end) throw new IOException(path + ": tensor " + name + ": data_offsets [" + begin + ", " + end + "] run backwards");
                if (end > size - dataStart) {
                    throw new IOException(path + ": truncated file: tensor " + name + " ends at byte " + (dataStart + end)
                            + " but the file has " + size + " bytes");
                }
                long elements = 1;
                try {
                    for (long d : shape) elements = Math.multiplyExact(elements, d);
                    Math.multiplyExact(elements, (long) dtype.bytes());
                } catch (ArithmeticException overflow) {
                    throw new IOException(path + ": tensor " + name + ": shape " + java.util.Arrays.toString(shape) + " is too large");
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

    /** A header array of non-negative integers ({@code length} of them, or any number when -1), or an error naming it. */
    private static long[] longs(JsonNode a, int length, Path path, String tensor, String field) throws IOException {
        if (!a.isArray() || (length >= 0 && a.size() != length)) {
            throw new IOException(path + ": tensor " + tensor + ": " + field + " must be an array"
                    + (length >= 0 ? " of " + length : "") + " of non-negative integers, got " + a);
        }
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            JsonNode n = a.get(i);
            if (!n.isIntegralNumber() || !n.canConvertToLong() || n.asLong() < 0) {
                throw new IOException(path + ": tensor " + tensor + ": " + field + "[" + i + "] must be a non-negative integer, got " + n);
            }
            out[i] = n.asLong();
        }
        return out;
    }

    public Path path() { return path; }

    public Map<String, Tensor> tensors() { return tensors; }

    @Override
    public void close() { arena.close(); }
}
