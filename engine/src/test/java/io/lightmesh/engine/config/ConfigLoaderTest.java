package io.lightmesh.engine.config;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ConfigLoaderTest {
    static final ObjectMapper JSON = new ObjectMapper();

    /** The real MiniMax-M1-80k config.json, as released (auto_map and a few unused fields trimmed). */
    static final String M1_80K = """
            {"architectures": ["MiniMaxM1ForCausalLM"], "attention_dropout": 0.0,
             "attn_type_list": [0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,1,
                                0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,1],
             "bos_token_id": null, "eos_token_id": null, "head_dim": 128, "hidden_act": "silu", "hidden_size": 6144,
             "initializer_range": 0.02, "intermediate_size": 9216,
             "layernorm_full_attention_alpha": 3.5565588200778455, "layernorm_full_attention_beta": 1.0,
             "layernorm_linear_attention_alpha": 3.5565588200778455, "layernorm_linear_attention_beta": 1.0,
             "layernorm_mlp_alpha": 3.5565588200778455, "layernorm_mlp_beta": 1.0,
             "max_position_embeddings": 10240000, "model_type": "minimax_m1", "num_attention_heads": 64,
             "num_experts_per_tok": 2, "num_hidden_layers": 80, "num_key_value_heads": 8, "num_local_experts": 32,
             "output_router_logits": false, "postnorm": true, "rms_norm_eps": 1e-05, "rope_theta": 10000000,
             "rotary_dim": 64, "router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0,
             "shared_intermediate_size": 0, "shared_moe_mode": "sigmoid", "sliding_window": null,
             "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.45.2",
             "use_cache": true, "vocab_size": 200064}""";

    @Test
    void readsTheReleasedM1Config() throws Exception {
        ModelConfig c = ConfigLoader.parse(JSON.readTree(M1_80K));
        assertEquals(80, c.numLayers());
        assertEquals(10, c.numSoftmaxLayers());
        assertTrue(c.isSoftmax(7) && c.isSoftmax(79) && !c.isSoftmax(0));
        assertEquals(8192, c.attnDim());
        assertEquals(64, c.rotaryDim());
        assertEquals(256, c.blockSize());
        assertEquals(3.5565588f, c.mlpAlpha(), 1e-6f);
        // 456B parameters, 45.9B active: the published figures (their "active" leaves out the LM head,
        // which decode does read every token, so activeParameterCount() includes it)
        assertEquals(456e9, c.parameterCount(), 2e9);
        assertEquals(45.9e9, c.activeParameterCount() - (double) c.vocabSize() * c.hiddenSize(), 0.1e9);
    }

    @Test
    void readsTheHfDialect() throws Exception {
        ModelConfig c = ConfigLoader.parse(JSON.readTree("""
                {"model_type": "minimax", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 16,
                 "num_local_experts": 4, "num_experts_per_tok": 2, "block_size": 16,
                 "layer_types": ["linear_attention", "full_attention"],
                 "linear_attn_alpha_factor": 1.5, "full_attn_beta_factor": 0.5,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}}"""));
        assertFalse(c.isSoftmax(0));
        assertTrue(c.isSoftmax(1));
        assertEquals(8, c.rotaryDim(), "HF applies RoPE over the whole head");
        assertEquals(16, c.blockSize());
        assertEquals(5000.0, c.ropeTheta());
        assertEquals(1.5f, c.linearAttnAlpha());
        assertEquals(0.5f, c.fullAttnBeta());
        assertEquals(1.0f, c.mlpAlpha());
    }

    @Test
    void errorsNameTheField() throws Exception {
        ObjectNode bad = (ObjectNode) JSON.readTree(M1_80K);
        bad.remove("attn_type_list");
        assertMessage(bad, "attn_type_list");
        bad = (ObjectNode) JSON.readTree(M1_80K);
        bad.put("num_key_value_heads", 7);
        assertMessage(bad, "num_key_value_heads");
        bad = (ObjectNode) JSON.readTree(M1_80K);
        bad.put("model_type", "llama");
        assertMessage(bad, "model_type");
        bad = (ObjectNode) JSON.readTree(M1_80K);
        bad.put("rotary_dim", 129);
        assertMessage(bad, "rotary_dim");
        bad = (ObjectNode) JSON.readTree(M1_80K);
        bad.put("hidden_size", "big");
        assertMessage(bad, "hidden_size");
    }

    private static void assertMessage(ObjectNode config, String field) {
        var e = assertThrows(IllegalArgumentException.class, () -> ConfigLoader.parse(config));
        assertTrue(e.getMessage().contains(field), e.getMessage());
    }
}
