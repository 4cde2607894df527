package io.lightmesh.engine.model;

import io.lightmesh.engine.config.ModelConfig;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The order in which {@link ForwardPass} calls its {@link LayerOps}: the paper's order within a layer, the right
 * attention per layer, and two micro-batches interleaved so that one's experts are in flight while the other's
 * attention runs (the device path's ping-pong relies on it). The math behind the operations is checked by the
 * fixture tests on every implementation ({@link BackendFixturesTest}, {@link ResidentDecodeTest}).
 */
class ForwardPassTest {

    /** Records each call as "part:operation layer". */
    private record Recorder(String name, List<String> log) implements LayerOps {
        public void embed() { log.add(name + ":embed"); }
        public void lightning(int l, LightningAttention la) { log.add(name + ":lightning " + l); }
        public void softmax(int l, SoftmaxAttention sa) { log.add(name + ":softmax " + l); }
        public void outputAndRoute(int l, DecoderLayer layer) { log.add(name + ":route " + l); }
        public void startMoe(int l, DecoderLayer layer) { log.add(name + ":start " + l); }
        public void finishMoe(int l, DecoderLayer layer) { log.add(name + ":finish " + l); }
    }

    /** Layer 0 lightning, layer 1 softmax (weights are not read by the pass). */
    private static ForwardPass twoLayers() {
        float[] norm = new float[1];
        DecoderLayer lightning = new DecoderLayer(norm, norm, lightningWeights(), null, null, 1, 1, 1, 1);
        DecoderLayer softmax = new DecoderLayer(norm, norm, null, softmaxWeights(), null, 1, 1, 1, 1);
        return new ForwardPass(new DecoderLayer[]{lightning, softmax});
    }

    private static final ModelConfig C = new ModelConfig("minimax_m1", 16, 4, 2, 2, 1, 4, 4, 10000.0, 4, 2, 4, 1e-5,
            new boolean[]{false, true}, 1f, 1f, 1f, 1f, 1f, 1f, 16, 1024, false);

    private static LightningAttention lightningWeights() { return new LightningAttention(C, 0, null, null, null, null); }

    private static SoftmaxAttention softmaxWeights() { return new SoftmaxAttention(C, 1, null, null, null, null); }

    @Test
    void oneMicroBatchRunsTheLayersInPaperOrder() {
        List<String> log = new ArrayList<>();
        twoLayers().run(List.of(new Recorder("A", log)));
        assertEquals(List.of("A:embed",
                "A:lightning 0", "A:route 0", "A:start 0", "A:finish 0",
                "A:softmax 1", "A:route 1", "A:start 1", "A:finish 1"), log);
    }

    @Test
    void twoMicroBatchesAlternateSoThatOnesExpertsOverlapTheOthersAttention() {
        List<String> log = new ArrayList<>();
        twoLayers().run(List.of(new Recorder("A", log), new Recorder("B", log)));
        assertEquals(List.of("A:embed", "B:embed",
                "A:lightning 0", "A:route 0", "A:start 0",
                "B:lightning 0", "B:route 0", "B:start 0",     // A's experts of layer 0 in flight
                "A:finish 0", "A:softmax 1", "A:route 1", "A:start 1", // B's experts of layer 0 in flight
                "B:finish 0", "B:softmax 1", "B:route 1", "B:start 1",
                "A:finish 1", "B:finish 1"), log);
    }
}
