package io.lightmesh.engine.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Path;

/**
 * Reads config.json in either dialect: the original {@code minimax_m1} one that the released checkpoints carry
 * ({@code attn_type_list}, {@code layernorm_*_alpha}, {@code rotary_dim}, block size fixed at 256) and HF's
 * {@code minimax} ({@code layer_types}, {@code *_alpha_factor}, {@code rope_parameters}, {@code block_size}).
 * Unknown or inconsistent configs fail with a message naming the field.
 */
public final class ConfigLoader {
    private static final int M1_BLOCK_SIZE = 256;

    private ConfigLoader() {}

    public static ModelConfig load(Path configJson) throws IOException {
        JsonNode root = new ObjectMapper().readTree(configJson.toFile());
        try {
            return parse(root);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(configJson + ": " + e.getMessage(), e);
        }
    }

    public static ModelConfig parse(JsonNode c) {
        String type = c.path("model_type").asText("");
        boolean m1 = switch (type) {
            case "minimax_m1", "minimax_text_01" -> true;
            case "minimax" -> false;
            case "" -> throw new IllegalArgumentException("field model_type is missing (expected minimax_m1 or minimax)");
            default -> throw new IllegalArgumentException("field model_type: unsupported value '" + type
                    + "' (expected minimax_m1 or minimax)");
        };
        int layers = positive(c, "num_hidden_layers");
        int hidden = positive(c, "hidden_size");
        int heads = positive(c, "num_attention_heads");
        int kvHeads = c.has("num_key_value_heads") ? positive(c, "num_key_value_heads") : heads;
        int headDim = c.hasNonNull("head_dim") ? positive(c, "head_dim") : hidden / heads;
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException("field num_key_value_heads: " + kvHeads
                    + " does not divide num_attention_heads " + heads);
        }
        String act = c.path("hidden_act").asText("silu");
        if (!act.equals("silu")) throw new IllegalArgumentException("field hidden_act: only silu is supported, got " + act);

        boolean[] softmax = new boolean[layers];
        if (m1) {
            JsonNode list = required(c, "attn_type_list");
            if (list.size() != layers) {
                throw new IllegalArgumentException("field attn_type_list: has " + list.size()
                        + " entries but num_hidden_layers is " + layers);
            }
            for (int i = 0; i < layers; i++) {
                int t = list.get(i).asInt(-1);
                if (t != 0 && t != 1) throw new IllegalArgumentException("field attn_type_list[" + i + "]: expected 0 or 1, got " + list.get(i));
                softmax[i] = t == 1;
            }
            if (c.has("postnorm") && !c.get("postnorm").asBoolean()) {
                throw new IllegalArgumentException("field postnorm: only postnorm=true (as MiniMax-M1 ships) is supported");
            }
            if (c.path("shared_intermediate_size").asInt(0) != 0) {
                throw new IllegalArgumentException("field shared_intermediate_size: shared experts are not part of MiniMax-M1 and are not supported");
            }
        } else {
            JsonNode list = required(c, "layer_types");
            if (list.size() != layers) {
                throw new IllegalArgumentException("field layer_types: has " + list.size()
                        + " entries but num_hidden_layers is " + layers);
            }
            for (int i = 0; i < layers; i++) {
                String t = list.get(i).asText();
                softmax[i] = switch (t) {
                    case "full_attention" -> true;
                    case "linear_attention" -> false;
                    default -> throw new IllegalArgumentException("field layer_types[" + i + "]: expected linear_attention or full_attention, got " + t);
                };
            }
        }

        double theta = m1 ? c.path("rope_theta").asDouble(10_000.0)
                : c.path("rope_parameters").path("rope_theta").asDouble(c.path("rope_theta").asDouble(10_000.0));
        if (!m1 && c.has("rope_parameters")) {
            String ropeType = c.path("rope_parameters").path("rope_type").asText("default");
            if (!ropeType.equals("default")) throw new IllegalArgumentException("field rope_parameters.rope_type: only default is supported, got " + ropeType);
        }
        // HF's minimax applies RoPE over the whole head_dim; the M1 dialect names rotary_dim explicitly.
        int rotary = m1 && c.hasNonNull("rotary_dim") ? c.get("rotary_dim").asInt() : headDim;
        if (rotary <= 0 || rotary > headDim || rotary % 2 != 0) {
            throw new IllegalArgumentException("field rotary_dim: " + rotary + " must be even and in 1.." + headDim);
        }
        int experts = positive(c, "num_local_experts");
        int topK = positive(c, "num_experts_per_tok");
        if (topK > experts) throw new IllegalArgumentException("field num_experts_per_tok: " + topK + " exceeds num_local_experts " + experts);
        int block = m1 ? M1_BLOCK_SIZE : (c.hasNonNull("block_size") ? positive(c, "block_size") : M1_BLOCK_SIZE);

        String la = m1 ? "layernorm_linear_attention_alpha" : "linear_attn_alpha_factor";
        String lb = m1 ? "layernorm_linear_attention_beta" : "linear_attn_beta_factor";
        String fa = m1 ? "layernorm_full_attention_alpha" : "full_attn_alpha_factor";
        String fb = m1 ? "layernorm_full_attention_beta" : "full_attn_beta_factor";
        String ma = m1 ? "layernorm_mlp_alpha" : "mlp_alpha_factor";
        String mb = m1 ? "layernorm_mlp_beta" : "mlp_beta_factor";

        return new ModelConfig(type,
                positive(c, "vocab_size"), hidden, layers, heads, kvHeads, headDim, rotary, theta,
                experts, topK, positive(c, "intermediate_size"),
                c.path("rms_norm_eps").asDouble(1e-5), softmax,
                f(c, la), f(c, lb), f(c, fa), f(c, fb), f(c, ma), f(c, mb),
                block, c.path("max_position_embeddings").asLong(10_240_000L),
                c.path("tie_word_embeddings").asBoolean(false));
    }

    private static float f(JsonNode c, String field) {
        JsonNode n = c.get(field);
        if (n == null || n.isNull()) return 1.0f;
        if (!n.isNumber()) throw new IllegalArgumentException("field " + field + ": expected a number, got " + n);
        return (float) n.asDouble();
    }

    private static JsonNode required(JsonNode c, String field) {
        JsonNode n = c.get(field);
        if (n == null || n.isNull()) throw new IllegalArgumentException("field " + field + " is missing");
        return n;
    }

    private static int positive(JsonNode c, String field) {
        JsonNode n = required(c, field);
        if (!n.canConvertToInt() || n.asInt() <= 0) throw new IllegalArgumentException("field " + field + ": expected a positive integer, got " + n);
        return n.asInt();
    }
}
