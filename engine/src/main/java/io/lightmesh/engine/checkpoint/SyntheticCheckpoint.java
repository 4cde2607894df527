package io.lightmesh.engine.checkpoint;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.weights.SafeTensorsWriter;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * Writes a MiniMax-M1-architecture checkpoint with seeded random weights, in the real format (config.json in the
 * original minimax_m1 dialect or HF's minimax one, safetensors with the release's tensor names). Deterministic for a
 * given shape and seed: tests and benchmarks make the models they need instead of downloading them.
 */
public final class SyntheticCheckpoint {

    /** The shape of a synthetic model. Layer i is softmax attention when i % 8 == 7, as in MiniMax-M1. */
    public record Shape(int vocab, int hidden, int layers, int heads, int kvHeads, int headDim, int rotaryDim,
                        int experts, int topK, int intermediate, int blockSize) {

        /** A few-MB model for tests: crosses lightning blocks quickly (block 16) and has one softmax layer. */
        public static Shape tiny() { return new Shape(512, 64, 8, 4, 2, 16, 8, 4, 2, 48, 16); }

        /** Parameter count as stored. */
        public long parameters() {
            long h = hidden, a = (long) heads * headDim, kv = (long) kvHeads * headDim, total = 2L * vocab * h + h;
            for (int l = 0; l < layers; l++) {
                total += 2 * h + (l % 8 == 7 ? 2 * h * a + 2 * h * kv : 5 * a * h + a);
                total += experts * h + (long) experts * 3 * h * intermediate;
            }
            return total;
        }
    }

    private SyntheticCheckpoint() {}

    /**
     * Writes config.json and model.safetensors into {@code dir}.
     *
     * @param m1Dialect true for the original minimax_m1 config (block size then fixed at 256 by the dialect)
     */
    public static void write(Path dir, Shape s, DType dtype, long seed, boolean m1Dialect) throws IOException {
        Files.createDirectories(dir);
        SplittableRandom rnd = new SplittableRandom(seed);
        long h = s.hidden(), a = (long) s.heads() * s.headDim(), kv = (long) s.kvHeads() * s.headDim();
        // std ~ 1/sqrt(fan_in) keeps activations O(1); norms are random around 1 so a missing multiply shows
        SafeTensorsWriter w = new SafeTensorsWriter();
        w.put("model.embed_tokens.weight", normal(rnd, s.vocab() * h, 1.0), s.vocab(), h);
        for (int l = 0; l < s.layers(); l++) {
            String p = "model.layers." + l + ".";
            w.put(p + "input_layernorm.weight", around1(rnd, h), h);
            w.put(p + "post_attention_layernorm.weight", around1(rnd, h), h);
            if (l % 8 == 7) {
                w.put(p + "self_attn.q_proj.weight", normal(rnd, a * h, 1 / Math.sqrt(h)), a, h);
                w.put(p + "self_attn.k_proj.weight", normal(rnd, kv * h, 1 / Math.sqrt(h)), kv, h);
                w.put(p + "self_attn.v_proj.weight", normal(rnd, kv * h, 1 / Math.sqrt(h)), kv, h);
                w.put(p + "self_attn.o_proj.weight", normal(rnd, h * a, 1 / Math.sqrt(a)), h, a);
            } else {
                w.put(p + "self_attn.qkv_proj.weight", normal(rnd, 3 * a * h, 1 / Math.sqrt(h)), 3 * a, h);
                w.put(p + "self_attn.output_gate.weight", normal(rnd, a * h, 1 / Math.sqrt(h)), a, h);
                w.put(p + "self_attn.norm.weight", around1(rnd, a), a);
                w.put(p + "self_attn.out_proj.weight", normal(rnd, h * a, 1 / Math.sqrt(a)), h, a);
            }
            w.put(p + "block_sparse_moe.gate.weight", normal(rnd, s.experts() * h, 1 / Math.sqrt(h)), s.experts(), h);
            for (int e = 0; e < s.experts(); e++) {
                String q = p + "block_sparse_moe.experts." + e + ".";
                w.put(q + "w1.weight", normal(rnd, s.intermediate() * h, 1 / Math.sqrt(h)), s.intermediate(), h);
                w.put(q + "w2.weight", normal(rnd, h * s.intermediate(), 1 / Math.sqrt(s.intermediate())), h, s.intermediate());
                w.put(q + "w3.weight", normal(rnd, s.intermediate() * h, 1 / Math.sqrt(h)), s.intermediate(), h);
            }
        }
        w.put("model.norm.weight", around1(rnd, h), h);
        w.put("lm_head.weight", normal(rnd, s.vocab() * h, 1 / Math.sqrt(h)), s.vocab(), h);
        w.write(dir.resolve("model.safetensors"), dtype);
        Files.writeString(dir.resolve("config.json"), config(s, m1Dialect));
    }

    static String config(Shape s, boolean m1) {
        ObjectMapper json = new ObjectMapper();
        ObjectNode c = json.createObjectNode();
        double alpha = Math.pow(2.0 * s.layers(), 0.25);
        c.put("vocab_size", s.vocab()).put("hidden_size", s.hidden()).put("num_hidden_layers", s.layers())
                .put("num_attention_heads", s.heads()).put("num_key_value_heads", s.kvHeads())
                .put("head_dim", s.headDim()).put("num_local_experts", s.experts())
                .put("num_experts_per_tok", s.topK()).put("intermediate_size", s.intermediate())
                .put("rms_norm_eps", 1e-5).put("hidden_act", "silu").put("max_position_embeddings", 10_240_000)
                .put("tie_word_embeddings", false);
        ArrayNode types = json.createArrayNode();
        if (m1) {
            c.put("model_type", "minimax_m1");
            c.putArray("architectures").add("MiniMaxM1ForCausalLM");
            for (int l = 0; l < s.layers(); l++) types.add(l % 8 == 7 ? 1 : 0);
            c.set("attn_type_list", types);
            c.put("postnorm", true).put("rotary_dim", s.rotaryDim()).put("rope_theta", 10_000_000)
                    .put("shared_intermediate_size", 0);
            for (String k : new String[]{"linear_attention", "full_attention", "mlp"}) {
                c.put("layernorm_" + k + "_alpha", alpha).put("layernorm_" + k + "_beta", 1.0);
            }
        } else {
            c.put("model_type", "minimax");
            c.putArray("architectures").add("MiniMaxForCausalLM");
            for (int l = 0; l < s.layers(); l++) types.add(l % 8 == 7 ? "full_attention" : "linear_attention");
            c.set("layer_types", types);
            c.put("block_size", s.blockSize());
            c.putObject("rope_parameters").put("rope_type", "default").put("rope_theta", 10_000.0);
            for (String k : new String[]{"linear_attn", "full_attn", "mlp"}) {
                c.put(k + "_alpha_factor", alpha).put(k + "_beta_factor", 1.0);
            }
        }
        return c.toPrettyString();
    }

    private static float[] normal(SplittableRandom rnd, long n, double std) {
        float[] v = new float[Math.toIntExact(n)];
        for (int i = 0; i < v.length; i++) v[i] = (float) (gaussian(rnd) * std);
        return v;
    }

    private static float[] around1(SplittableRandom rnd, long n) {
        float[] v = new float[Math.toIntExact(n)];
        for (int i = 0; i < v.length; i++) v[i] = (float) (1 + 0.3 * gaussian(rnd));
        return v;
    }

    private static double gaussian(SplittableRandom rnd) {
        double u = rnd.nextDouble(), v = rnd.nextDouble();
        return Math.sqrt(-2 * Math.log(1 - u)) * Math.cos(2 * Math.PI * v);
    }
}
