package io.lightmesh.engine.weights;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/** Writes tensors given as fp32 arrays to a .safetensors file in a chosen storage dtype (demo and bench models). */
public final class SafeTensorsWriter {
    private final Map<String, float[]> values = new LinkedHashMap<>();
    private final Map<String, long[]> shapes = new LinkedHashMap<>();

    public SafeTensorsWriter put(String name, float[] v, long... shape) {
        values.put(name, v);
        shapes.put(name, shape);
        return this;
    }

    public long byteSize(DType dtype) {
        long n = 0;
        for (float[] v : values.values()) n += (long) v.length * dtype.bytes();
        return n;
    }

    public void write(Path file, DType dtype) throws IOException {
        ObjectNode header = new ObjectMapper().createObjectNode();
        long off = 0;
        for (Map.Entry<String, float[]> e : values.entrySet()) {
            ObjectNode t = header.putObject(e.getKey());
            t.put("dtype", dtype.safetensorsName());
            var sh = t.putArray("shape");
            for (long d : shapes.get(e.getKey())) sh.add(d);
            long len = (long) e.getValue().length * dtype.bytes();
            t.putArray("data_offsets").add(off).add(off + len);
            off += len;
        }
        byte[] h = header.toString().getBytes(StandardCharsets.UTF_8);
        int pad = (8 - h.length % 8) % 8; // keep tensor data 8-byte aligned
        byte[] hp = new byte[h.length + pad];
        System.arraycopy(h, 0, hp, 0, h.length);
        for (int i = h.length; i < hp.length; i++) hp[i] = ' ';
        try (OutputStream out = new BufferedOutputStream(Files.newOutputStream(file), 1 << 20)) {
            ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(hp.length);
            out.write(len.array());
            out.write(hp);
            ByteBuffer buf = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
            for (float[] v : values.values()) {
                for (float f : v) {
                    if (buf.remaining() < 4) { out.write(buf.array(), 0, buf.position()); buf.clear(); }
                    switch (dtype) {
                        case F32 -> buf.putFloat(f);
                        case BF16 -> buf.putShort(Tensor.floatToBf16(f));
                        case F16 -> buf.putShort(Float.floatToFloat16(f));
                    }
                }
            }
            out.write(buf.array(), 0, buf.position());
        }
    }
}
