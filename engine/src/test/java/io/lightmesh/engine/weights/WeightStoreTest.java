package io.lightmesh.engine.weights;

import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class WeightStoreTest {
    @TempDir Path dir;

    private static SafeTensorsWriter sample() {
        return new SafeTensorsWriter()
                .put("a.weight", new float[]{1f, -2.5f, 3.25f, 1e-3f, 65504f, -0f}, 2, 3)
                .put("b.weight", new float[]{0.1f, 0.2f, 0.3f}, 3);
    }

    @Test
    void readsEveryDtypeInPlace() throws IOException {
        for (DType dt : DType.values()) {
            Path d = Files.createDirectories(dir.resolve(dt.name()));
            sample().write(d.resolve("model.safetensors"), dt);
            try (WeightStore ws = WeightStore.open(d)) {
                Tensor a = ws.get("a.weight", 2, 3);
                assertEquals(dt, a.dtype());
                float[] v = a.toFloatArray();
                float[] want = {1f, -2.5f, 3.25f, 1e-3f, 65504f, -0f};
                for (int i = 0; i < want.length; i++) {
                    float tol = dt == DType.F32 ? 0 : Math.abs(want[i]) * (dt == DType.BF16 ? 4e-3f : 1e-3f);
                    assertEquals(want[i], v[i], tol, dt + " element " + i);
                }
            }
        }
    }

    @Test
    void bf16RoundsToNearestEven() {
        assertEquals((short) 0x3f80, Tensor.floatToBf16(1.0f));
        assertEquals(1.0f, Tensor.bf16ToFloat(Tensor.floatToBf16(1.0f + 1e-4f)));
        assertEquals((short) 0x3f81, Tensor.floatToBf16(Float.intBitsToFloat(0x3f80c000))); // above halfway: up
        assertEquals((short) 0x3f80, Tensor.floatToBf16(Float.intBitsToFloat(0x3f808000))); // tie, even stays
        assertEquals((short) 0x3f82, Tensor.floatToBf16(Float.intBitsToFloat(0x3f818000))); // tie, odd rounds up
    }

    @Test
    void shardedIndexIsFollowed() throws IOException {
        new SafeTensorsWriter().put("a.weight", new float[]{1, 2}, 2).write(dir.resolve("model-00001-of-00002.safetensors"), DType.F32);
        new SafeTensorsWriter().put("b.weight", new float[]{3}, 1).write(dir.resolve("model-00002-of-00002.safetensors"), DType.BF16);
        Files.writeString(dir.resolve("model.safetensors.index.json"), """
                {"metadata": {"total_size": 10}, "weight_map": {
                  "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}""");
        try (WeightStore ws = WeightStore.open(dir)) {
            assertEquals(2f, ws.get("a.weight").get(1));
            assertEquals(3f, ws.get("b.weight").get(0));
        }
    }

    @Test
    void missingTensorAndWrongShapeNameTheTensor() throws IOException {
        sample().write(dir.resolve("model.safetensors"), DType.F32);
        try (WeightStore ws = WeightStore.open(dir)) {
            var missing = assertThrows(IllegalArgumentException.class, () -> ws.get("c.weight"));
            assertTrue(missing.getMessage().contains("c.weight"), missing.getMessage());
            var shape = assertThrows(IllegalArgumentException.class, () -> ws.get("a.weight", 3, 2));
            assertTrue(shape.getMessage().contains("a.weight") && shape.getMessage().contains("[3, 2]")
                    && shape.getMessage().contains("[2, 3]"), shape.getMessage());
        }
    }

    @Test
    void truncatedFileIsAnErrorNamingTheTensor() throws IOException {
        Path f = dir.resolve("model.safetensors");
        sample().write(f, DType.F32);
        byte[] all = Files.readAllBytes(f);
        Files.write(f, java.util.Arrays.copyOf(all, all.length - 4), StandardOpenOption.TRUNCATE_EXISTING);
        var e = assertThrows(IOException.class, () -> WeightStore.open(dir));
        assertTrue(e.getMessage().contains("truncated") && e.getMessage().contains("b.weight"), e.getMessage());
    }

    @Test
    void missingShardIsAnError() throws IOException {
        Files.writeString(dir.resolve("model.safetensors.index.json"),
                "{\"weight_map\": {\"a.weight\": \"model-00001-of-00001.safetensors\"}}");
        var e = assertThrows(IOException.class, () -> WeightStore.open(dir));
        assertTrue(e.getMessage().contains("model-00001-of-00001.safetensors"), e.getMessage());
    }

    @Test
    void anIndexCannotReachOutsideTheCheckpointFolder() throws IOException {
        sample().write(dir.resolve("outside.safetensors"), DType.F32);
        Path model = Files.createDirectories(dir.resolve("model"));
        for (String shard : new String[]{"../outside.safetensors", dir.resolve("outside.safetensors").toString(), "", "a\u0000b"}) {
            Files.writeString(model.resolve("model.safetensors.index.json"),
                    "{\"weight_map\": {\"a.weight\": " + new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsString(shard) + "}}");
            var e = assertThrows(IOException.class, () -> WeightStore.open(model), shard);
            assertTrue(e.getMessage().contains("expected a file name in the checkpoint folder"), e.getMessage());
        }
    }

    @Test
    void aHeaderEntryWithoutOffsetsOrWithOffsetsOutsideTheFileIsAnIoExceptionNamingTheTensor() throws IOException {
        for (String entry : new String[]{"{\"dtype\": \"F32\", \"shape\": [1]}",
                "{\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 400]}",
                "{\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}",
                "{\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}",
                "{\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 0]}",
                "[1, 2]"}) {
            byte[] header = ("{\"t\": " + entry + "}").getBytes(java.nio.charset.StandardCharsets.UTF_8);
            java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(8 + header.length + 4).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            b.putLong(header.length).put(header).putFloat(1f);
            Path f = dir.resolve("bad.safetensors");
            Files.write(f, b.array());
            var e = assertThrows(IOException.class, () -> SafeTensorsFile.open(f).close(), entry);
            assertTrue(e.getMessage().contains("tensor t"), e.getMessage());
            assertTrue(e.getCause() == null || e.getCause() instanceof IllegalArgumentException, () -> "cause " + e.getCause());
        }
    }
}
