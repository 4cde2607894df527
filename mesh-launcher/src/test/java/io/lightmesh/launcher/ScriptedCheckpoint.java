package io.lightmesh.launcher;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tokenizer.Tokenizer;
import io.lightmesh.engine.weights.SafeTensorsWriter;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * A checkpoint of the M1 architecture that writes a chosen text: a bigram model built into real weights. Every
 * attention output projection and every expert's down projection is zero and every norm weight one, so each layer
 * passes on its normalised input and the logits are {@code lm_head . normalise(embed[token])}: the next token depends
 * on the current one only. The script's tokens get orthogonal embeddings and lm_head rows pointing from each to its
 * successor (logit margin about 45), so after {@code start} the model writes the script, then eos, greedy or sampled.
 *
 * <p>A token has one successor, so the script's tokens must all differ: its text pieces become tokens of their own,
 * appended to a copy of the fixture tokenizer's vocabulary (ids from 2048 up; BPE never produces them when encoding,
 * decoding writes their text). The other weights are random, as in {@link SyntheticCheckpoint}.
 */
final class ScriptedCheckpoint {
    static final int BASE_VOCAB = 2048, EXTRA = 64;
    static final SyntheticCheckpoint.Shape SHAPE = new SyntheticCheckpoint.Shape(BASE_VOCAB + EXTRA, 128, 8, 4, 2, 16, 8, 4, 2, 48, 16);

    private ScriptedCheckpoint() {}

    /**
     * Writes config.json, model.safetensors and the tokenizer into {@code dir}; returns the script's ids, eos last.
     *
     * @param tokenizerDir holds tokenizer.json and tokenizer_config.json with {@link #BASE_VOCAB} ids
     * @param start        vocabulary form of the token after which the script begins (the last token of the prompts)
     * @param script       pieces of text, each becoming one token; a piece in the tokenizer's vocabulary already
     *                     (e.g. "&lt;think&gt;") is that token
     */
    static int[] write(Path dir, Path tokenizerDir, String start, List<String> script) throws IOException {
        SyntheticCheckpoint.write(dir, SHAPE, DType.F32, 5, false); // config.json (the weights are replaced below)
        ObjectMapper json = new ObjectMapper();
        ObjectNode tj = (ObjectNode) json.readTree(tokenizerDir.resolve("tokenizer.json").toFile());
        ObjectNode vocab = (ObjectNode) tj.path("model").path("vocab");
        Tokenizer base = Tokenizer.load(tokenizerDir.resolve("tokenizer.json"));
        // added tokens missing from the vocab take ids after it: pin them into the vocab at their ids first
        for (com.fasterxml.jackson.databind.JsonNode t : tj.path("added_tokens")) {
            String content = t.path("content").asText();
            if (!vocab.has(content)) vocab.put(content, base.tokenId(content));
        }
        int next = BASE_VOCAB;
        for (String piece : script) {
            if (base.tokenId(piece) >= 0 || vocab.has(byteLevel(piece))) continue;
            if (next == BASE_VOCAB + EXTRA) throw new IllegalArgumentException("more than " + EXTRA + " new pieces");
            vocab.put(byteLevel(piece), next++);
        }
        json.writeValue(dir.resolve("tokenizer.json").toFile(), tj);
        Files.copy(tokenizerDir.resolve("tokenizer_config.json"), dir.resolve("tokenizer_config.json"),
                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Tokenizer tok = Tokenizer.load(dir.resolve("tokenizer.json"));
        int eos = tok.eosId().orElseThrow(), from = tok.tokenId(start);
        if (from < 0) throw new IllegalArgumentException("no token " + start);
        int[] ids = new int[script.size() + 1];
        Set<Integer> seen = new HashSet<>(List.of(from, eos));
        Map<Integer, Integer> successor = new LinkedHashMap<>();
        int prev = from;
        for (int i = 0; i <= script.size(); i++) {
            int id = i == script.size() ? eos : tok.tokenId(tok.tokenId(script.get(i)) >= 0 ? script.get(i) : byteLevel(script.get(i)));
            if (i < script.size() && !seen.add(id)) throw new IllegalArgumentException("piece '" + script.get(i) + "' used twice");
            ids[i] = id;
            successor.put(prev, id);
            prev = id;
        }
        weights(dir, successor);
        return ids;
    }

    /** GPT-2's byte-to-unicode form of a text, as vocabulary keys are written. */
    static String byteLevel(String s) {
        StringBuilder sb = new StringBuilder();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            int v = b & 0xFF;
            boolean printable = v >= '!' && v <= '~' || v >= 0xA1 && v <= 0xAC || v >= 0xAE;
            if (printable) { sb.append((char) v); continue; }
            int n = 0;
            for (int x = 0; x < v; x++) if (!(x >= '!' && x <= '~' || x >= 0xA1 && x <= 0xAC || x >= 0xAE)) n++;
            sb.append((char) (256 + n));
        }
        return sb.toString();
    }

    /** The weights of the bigram model {@code successor} (token -> following token). */
    private static void weights(Path dir, Map<Integer, Integer> successor) throws IOException {
        SyntheticCheckpoint.Shape s = SHAPE;
        int V = s.vocab(), h = s.hidden(), a = s.heads() * s.headDim(), kv = s.kvHeads() * s.headDim();
        if (successor.size() > h) throw new IllegalArgumentException("a script of " + successor.size() + " tokens needs hidden >= that");
        SplittableRandom rnd = new SplittableRandom(3);
        float[] embed = random(rnd, V * h, 1.0);
        float[] lmHead = new float[V * h];
        int code = 0;
        for (Map.Entry<Integer, Integer> e : successor.entrySet()) {
            int from = e.getKey(), to = e.getValue();
            java.util.Arrays.fill(embed, from * h, (from + 1) * h, 0f);
            embed[from * h + code] = (float) Math.sqrt(h); // RMS 1: every norm of the model leaves it as it is
            lmHead[to * h + code] = 4f;
            code++;
        }
        SafeTensorsWriter w = new SafeTensorsWriter();
        w.put("model.embed_tokens.weight", embed, V, h);
        for (int l = 0; l < s.layers(); l++) {
            String p = "model.layers." + l + ".";
            w.put(p + "input_layernorm.weight", ones(h), h);
            w.put(p + "post_attention_layernorm.weight", ones(h), h);
            if (l % 8 == 7) {
                w.put(p + "self_attn.q_proj.weight", random(rnd, a * h, 0.1), a, h);
                w.put(p + "self_attn.k_proj.weight", random(rnd, kv * h, 0.1), kv, h);
                w.put(p + "self_attn.v_proj.weight", random(rnd, kv * h, 0.1), kv, h);
                w.put(p + "self_attn.o_proj.weight", new float[h * a], h, a);
            } else {
                w.put(p + "self_attn.qkv_proj.weight", random(rnd, 3 * a * h, 0.1), 3 * a, h);
                w.put(p + "self_attn.output_gate.weight", random(rnd, a * h, 0.1), a, h);
                w.put(p + "self_attn.norm.weight", ones(a), a);
                w.put(p + "self_attn.out_proj.weight", new float[h * a], h, a);
            }
            w.put(p + "block_sparse_moe.gate.weight", random(rnd, s.experts() * h, 0.1), s.experts(), h);
            for (int e = 0; e < s.experts(); e++) {
                String q = p + "block_sparse_moe.experts." + e + ".";
                w.put(q + "w1.weight", random(rnd, s.intermediate() * h, 0.1), s.intermediate(), h);
                w.put(q + "w2.weight", new float[h * s.intermediate()], h, s.intermediate());
                w.put(q + "w3.weight", random(rnd, s.intermediate() * h, 0.1), s.intermediate(), h);
            }
        }
        w.put("model.norm.weight", ones(h), h);
        w.put("lm_head.weight", lmHead, V, h);
        w.write(dir.resolve("model.safetensors"), DType.F32);
    }

    private static float[] ones(int n) {
        float[] v = new float[n];
        java.util.Arrays.fill(v, 1f);
        return v;
    }

    private static float[] random(SplittableRandom rnd, int n, double std) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) ((rnd.nextDouble() * 2 - 1) * std * Math.sqrt(3));
        return v;
    }
}
