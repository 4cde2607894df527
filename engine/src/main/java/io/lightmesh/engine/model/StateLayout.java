package io.lightmesh.engine.model;

import io.lightmesh.engine.config.ModelConfig;

import java.util.ArrayList;
import java.util.List;

/**
 * The serialised form of a {@link SequenceState} ("lightmesh.sequence-state.v1") as a list of runs, shared by
 * {@link StateEncoder} and {@link StateDecoder} so that the format is written down once:
 * <pre>
 *   preamble   7 x int32 big-endian: magic "LMSS", version 1, layers, heads, head_dim, kv_heads, position
 *   per layer, layer 0 first:
 *     lightning  S [heads, head_dim, head_dim]                       float32 little-endian
 *     softmax    kv_length int32 big-endian (= position), then K [kv_length, kv_heads, head_dim] and V (same),
 *                float32 little-endian
 * </pre>
 * (The integers are big-endian because version 1 was written with {@code DataOutput}; kept for compatibility.)
 */
final class StateLayout {
    static final int MAGIC = 0x4c4d5353; // "LMSS"
    static final int VERSION = 1;
    static final int PREAMBLE_BYTES = 7 * Integer.BYTES;

    /** One run of the stream: big-endian int32s (named, checked on decode) or the first {@code count} floats of an array. */
    sealed interface Run permits Ints, Floats {
        long bytes();
    }

    record Ints(String[] names, int[] values) implements Run {
        public long bytes() { return (long) values.length * Integer.BYTES; }
    }

    record Floats(float[] array, int count) implements Run {
        public long bytes() { return (long) count * Float.BYTES; }
    }

    private StateLayout() {}

    /** The runs of {@code s}, in stream order (softmax layers' KV taken at their current length). */
    static List<Run> runs(SequenceState s) {
        ModelConfig c = s.config();
        List<Run> runs = new ArrayList<>(2 + 3 * c.numLayers());
        runs.add(new Ints(new String[]{"magic", "version", "layers", "heads", "head_dim", "kv_heads", "position"},
                new int[]{MAGIC, VERSION, c.numLayers(), c.numHeads(), c.headDim(), c.numKvHeads(), s.position()}));
        for (int l = 0; l < c.numLayers(); l++) {
            if (c.isSoftmax(l)) {
                KvCache kv = s.kvCacheForReading(l);
                int n = kv.length() * kv.rowWidth();
                runs.add(new Ints(new String[]{"layer " + l + " KV length"}, new int[]{kv.length()}));
                runs.add(new Floats(kv.keys(), n));
                runs.add(new Floats(kv.values(), n));
            } else {
                float[] S = s.lightningStateForReading(l);
                runs.add(new Floats(S, S.length));
            }
        }
        return runs;
    }

    /** Bytes of the serialised form of a state of {@code position} tokens of model {@code c}. */
    static long bytes(ModelConfig c, long position) {
        long b = PREAMBLE_BYTES, H = c.numHeads(), D = c.headDim();
        for (int l = 0; l < c.numLayers(); l++) {
            b += c.isSoftmax(l) ? Integer.BYTES + 2L * position * c.kvDim() * Float.BYTES : H * D * D * Float.BYTES;
        }
        return b;
    }
}
