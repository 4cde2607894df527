package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.config.ConfigLoader;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.tensor.Tensor;
import io.lightmesh.engine.weights.WeightStore;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * A MiniMax-M1-family model: embeddings, L decoder layers (lightning or softmax attention, each followed by a
 * top-k MoE), the final norm and the LM head. Weights are used in place from the mapped checkpoint.
 *
 * <p>The model is stateless between calls: everything a sequence carries lives in its {@link SequenceState}, so
 * one model serves many sequences, and a state can move between processes.
 */
public final class MiniMaxModel implements AutoCloseable {
    private final ModelConfig config;
    private final WeightStore weights;
    private final TensorOps ops;
    private final Tensor embed;     // [V, h]
    private final Tensor lmHead;    // [V, h]
    private final float[] finalNorm; // [h]
    private final DecoderLayer[] layers;
    private final ForwardPass pass;  // the layers' math, once for every path
    private final ExpertExecutor experts;
    private final int prefillChunk;
    /** Decode on the device when the backend has resident operations (experts local or remote); made on first use. */
    private final boolean residentDecode;
    /** Prefill on the device too (same conditions; off with -Dlightmesh.opencl.residentPrefill=false). */
    private final boolean residentPrefill;
    /** Device path with remote experts: two alternating micro-batches (off with -Dlightmesh.device.pingPong=false). */
    private final boolean pingPong;
    /** Device decode steps of up to 8 rows on the fused kernels where the device has them (off: per operation; tests). */
    private final boolean fusedDecode;
    private ResidentDecoder resident;

    private MiniMaxModel(ModelConfig config, WeightStore weights, TensorOps ops, Tensor embed, Tensor lmHead,
                         float[] finalNorm, DecoderLayer[] layers, ExpertExecutor experts) {
        this(config, weights, ops, embed, lmHead, finalNorm, layers, experts,
                !"false".equalsIgnoreCase(System.getProperty("lightmesh.opencl.residentPrefill", "true")),
                !"false".equalsIgnoreCase(System.getProperty("lightmesh.device.pingPong", "true")), true);
    }

    private MiniMaxModel(ModelConfig config, WeightStore weights, TensorOps ops, Tensor embed, Tensor lmHead,
                         float[] finalNorm, DecoderLayer[] layers, ExpertExecutor experts, boolean devicePrefill,
                         boolean pingPong, boolean fusedDecode) {
        this.config = config;
        this.weights = weights;
        this.ops = ops;
        this.embed = embed;
        this.lmHead = lmHead;
        this.finalNorm = finalNorm;
        this.layers = layers;
        this.pass = new ForwardPass(layers);
        this.experts = experts;
        // chunks are whole lightning blocks so chunked prefill partitions the sequence as one-shot prefill does
        this.prefillChunk = Math.max(1, 2048 / config.blockSize()) * config.blockSize();
        this.residentDecode = ops.resident() != null && ResidentDecoder.supports(config);
        this.residentPrefill = residentDecode && devicePrefill;
        this.pingPong = residentDecode && pingPong && !ResidentDecoder.hostsAll(config, experts);
        this.fusedDecode = fusedDecode;
    }

    /** The same model with prefill on the host's array path even where decode runs on the device (tests). */
    MiniMaxModel withHostPrefill() {
        return new MiniMaxModel(config, weights, ops, embed, lmHead, finalNorm, layers, experts, false, pingPong, fusedDecode);
    }

    /** The same model with every device decode step per operation, never on the fused kernels (tests). */
    MiniMaxModel withoutFusedDecode() {
        return new MiniMaxModel(config, weights, ops, embed, lmHead, finalNorm, layers, experts, residentPrefill, pingPong, false);
    }

    /**
     * The same model with the remote experts' micro-batching (ping-pong) on or off; it only applies to the device
     * path with remote experts. The default is on ({@code -Dlightmesh.device.pingPong=false} turns it off).
     */
    public MiniMaxModel withMicroBatching(boolean on) {
        return new MiniMaxModel(config, weights, ops, embed, lmHead, finalNorm, layers, experts, residentPrefill, on, fusedDecode);
    }

    /** Loads config.json and the safetensors weights of {@code dir}; every tensor is checked by name and shape. */
    public static MiniMaxModel load(Path dir, TensorOps ops) throws IOException {
        return load(dir, ops, true);
    }

    /**
     * As {@link #load(Path, TensorOps)}; with {@code preloadExperts} false the in-process experts' weights are not
     * handed to the backend up front (a device backend would upload every expert of the model now): for a process
     * whose experts are computed elsewhere or held by an expert shard's own set, they reach the device only if
     * the in-process experts are ever run.
     */
    public static MiniMaxModel load(Path dir, TensorOps ops, boolean preloadExperts) throws IOException {
        ModelConfig c = ConfigLoader.load(dir.resolve("config.json"));
        WeightStore w = WeightStore.open(dir);
        try {
            return build(c, w, ops, new LocalExperts(c, w, ops, (l, e) -> true, preloadExperts));
        } catch (RuntimeException e) {
            w.close();
            throw e;
        }
    }

    private static MiniMaxModel build(ModelConfig c, WeightStore w, TensorOps ops, ExpertExecutor experts) {
        long V = c.vocabSize(), h = c.hiddenSize(), HD = c.attnDim(), KVD = c.kvDim(), E = c.numExperts();
        Tensor embed = w.get("model.embed_tokens.weight", V, h);
        Tensor lmHead = c.tieWordEmbeddings() && !w.contains("lm_head.weight") ? embed : w.get("lm_head.weight", V, h);
        DecoderLayer[] layers = new DecoderLayer[c.numLayers()];
        for (int l = 0; l < layers.length; l++) {
            String p = "model.layers." + l + ".";
            float[] in = w.get(p + "input_layernorm.weight", h).toFloatArray();
            float[] post = w.get(p + "post_attention_layernorm.weight", h).toFloatArray();
            MoeLayer moe = new MoeLayer(c, l, w.get(p + "block_sparse_moe.gate.weight", E, h));
            if (c.isSoftmax(l)) {
                SoftmaxAttention sa = new SoftmaxAttention(c, l,
                        w.get(p + "self_attn.q_proj.weight", HD, h), w.get(p + "self_attn.k_proj.weight", KVD, h),
                        w.get(p + "self_attn.v_proj.weight", KVD, h), w.get(p + "self_attn.o_proj.weight", h, HD));
                layers[l] = new DecoderLayer(in, post, null, sa, moe,
                        c.fullAttnAlpha(), c.fullAttnBeta(), c.mlpAlpha(), c.mlpBeta());
            } else {
                LightningAttention la = new LightningAttention(c, l,
                        w.get(p + "self_attn.qkv_proj.weight", 3 * HD, h), w.get(p + "self_attn.output_gate.weight", HD, h),
                        w.get(p + "self_attn.norm.weight", HD).toFloatArray(), w.get(p + "self_attn.out_proj.weight", h, HD));
                layers[l] = new DecoderLayer(in, post, la, null, moe,
                        c.linearAttnAlpha(), c.linearAttnBeta(), c.mlpAlpha(), c.mlpBeta());
            }
        }
        float[] finalNorm = w.get("model.norm.weight", h).toFloatArray();
        ops.preload(matmulWeights(w, c, lmHead));
        return new MiniMaxModel(c, w, ops, embed, lmHead, finalNorm, layers, experts);
    }

    /** Every weight of attention, routing and the LM head (experts are the {@link ExpertExecutor}'s). */
    private static List<Tensor> matmulWeights(WeightStore w, ModelConfig c, Tensor lmHead) {
        List<Tensor> all = new java.util.ArrayList<>();
        for (int l = 0; l < c.numLayers(); l++) {
            String p = "model.layers." + l + ".";
            String[] names = c.isSoftmax(l)
                    ? new String[]{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}
                    : new String[]{"self_attn.qkv_proj", "self_attn.output_gate", "self_attn.out_proj"};
            for (String n : names) all.add(w.get(p + n + ".weight"));
            all.add(w.get(p + "block_sparse_moe.gate.weight"));
        }
        all.add(lmHead);
        return all;
    }

    /** The same weights with the MoE experts computed by {@code remote} (expert shards) instead of in-process. */
    public MiniMaxModel withExperts(ExpertExecutor remote) {
        return new MiniMaxModel(config, weights, ops, embed, lmHead, finalNorm, layers, remote);
    }

    public ModelConfig config() { return config; }
    public WeightStore weights() { return weights; }
    public TensorOps ops() { return ops; }

    public SequenceState newState() { return new SequenceState(config, 256); }

    /** Runs {@code tokens} through the model after what {@code s} holds; returns the last token's logits [V]. */
    public float[] prefill(SequenceState s, int[] tokens) {
        if (tokens.length == 0) throw new IllegalArgumentException("prefill needs at least one token");
        return prefill(s, tokens, new int[]{tokens.length - 1})[0];
    }

    /**
     * Prefill in chunks of whole lightning blocks, returning the logits at the requested rows of {@code tokens}
     * (row r's logits predict token r+1).
     */
    public float[][] prefill(SequenceState s, int[] tokens, int[] logitRows) {
        float[][] out = new float[logitRows.length][];
        checkRows(tokens, s.position(), tokens.length, "sequence"); // up front: no chunk runs if one would fail
        for (int from = 0; from < tokens.length; from += prefillChunk) {
            int n = Math.min(prefillChunk, tokens.length - from);
            int[] chunk = java.util.Arrays.copyOfRange(tokens, from, from + n);
            List<Integer> which = new java.util.ArrayList<>(); // the requested rows in this chunk
            for (int i = 0; i < logitRows.length; i++) if (logitRows[i] >= from && logitRows[i] < from + n) which.add(i);
            int[] rows = new int[which.size()];
            for (int j = 0; j < rows.length; j++) rows[j] = logitRows[which.get(j)] - from;
            float[][] got = residentPrefill ? residentDecoder().prefill(s, chunk, rows)
                    : onHost(Batch.prefill(s, n), chunk, rows);
            for (int j = 0; j < rows.length; j++) out[which.get(j)] = got[j];
        }
        for (int i = 0; i < logitRows.length; i++) {
            if (out[i] == null) throw new IllegalArgumentException("logit row " + logitRows[i] + " outside 0.." + (tokens.length - 1));
        }
        return out;
    }

    /**
     * Batched prefill: runs each sequence's {@code tokens.get(i)} after what {@code states.get(i)} holds, the
     * sequences side by side in shared forward steps of at most {@link #prefillStepTokens()} rows (one segment of
     * consecutive tokens per sequence per step). A prompt longer than what is left of a step is cut at a lightning
     * block boundary and goes on in the next step, so each sequence is partitioned into blocks as its own prefill
     * partitions it. Returns each sequence's last-token logits [V].
     */
    public float[][] prefill(List<SequenceState> states, List<int[]> tokens) {
        return prefill(states, tokens, prefillChunk);
    }

    /** As {@link #prefill(List, List)}, with steps of at most {@code stepTokens} rows (rounded down to whole blocks, one at least). */
    public float[][] prefill(List<SequenceState> states, List<int[]> tokens, int stepTokens) {
        int n = states.size();
        if (tokens.size() != n) throw new IllegalArgumentException(n + " states but " + tokens.size() + " prompts");
        if (new java.util.HashSet<>(states).size() != n) throw new IllegalArgumentException("a state appears twice in one batch");
        for (int i = 0; i < n; i++) { // checked before any state moves
            if (tokens.get(i).length == 0) throw new IllegalArgumentException("prefill needs at least one token (sequence " + i + ")");
            checkRows(tokens.get(i), states.get(i).position(), tokens.get(i).length, "sequence " + i);
        }
        int block = config.blockSize(), step = Math.max(block, stepTokens / block * block);
        int[] done = new int[n];
        float[][] out = new float[n][];
        if (residentPrefill) { // on the device the sequences run one after another, each in whole chunks
            for (int i = 0; i < n; i++) out[i] = prefill(states.get(i), tokens.get(i));
            return out;
        }
        for (boolean more = true; more; ) {
            List<Batch.Segment> segments = new java.util.ArrayList<>();
            int[] rowTokens = new int[step], lastRow = new int[n];
            java.util.Arrays.fill(lastRow, -1);
            int rows = 0;
            for (int i = 0; i < n && rows < step; i++) {
                int left = tokens.get(i).length - done[i], take = Math.min(left, step - rows);
                if (take < left) take -= take % block; // a cut mid-prompt falls on a block boundary
                if (take == 0) continue;
                System.arraycopy(tokens.get(i), done[i], rowTokens, rows, take);
                segments.add(new Batch.Segment(states.get(i), rows, take));
                done[i] += take;
                rows += take;
                if (done[i] == tokens.get(i).length) lastRow[i] = rows - 1;
            }
            int[] wanted = java.util.Arrays.stream(lastRow).filter(r -> r >= 0).toArray(); // in sequence order
            float[][] got = onHost(new Batch(segments, rows), rowTokens, wanted);
            more = false;
            for (int i = 0, j = 0; i < n; i++) {
                if (lastRow[i] >= 0) out[i] = got[j++];
                more |= done[i] < tokens.get(i).length;
            }
        }
        return out;
    }

    /** Rows of one forward step of prefill: whole lightning blocks, about 2048 tokens. */
    public int prefillStepTokens() { return prefillChunk; }

    /** Every token id in the vocabulary, and {@code count} more tokens after {@code position} within max positions. */
    private void checkRows(int[] tokens, int position, int count, String which) {
        for (int id : tokens) {
            if (id < 0 || id >= config.vocabSize()) {
                throw new IllegalArgumentException("token id " + id + " outside the vocabulary 0.." + (config.vocabSize() - 1));
            }
        }
        if ((long) position + count > config.maxPositions()) {
            throw new IllegalArgumentException(which + " would exceed max_position_embeddings " + config.maxPositions());
        }
    }

    /**
     * One continuous-batching decode step: token i is appended to states.get(i); returns logits [B][V]. On a backend
     * with device-resident operations the step runs there ({@link ResidentDecoder}), the states staying on the device.
     */
    public float[][] decode(List<SequenceState> states, int[] tokens) {
        boolean[] all = new boolean[tokens.length];
        java.util.Arrays.fill(all, true);
        return decode(states, tokens, all).logits();
    }

    /**
     * As {@link #decode(List, int[])}, giving back every row's greedy choice (the argmax of its logits) and the logits
     * of the rows with {@code logitsWanted[i]} (null rows elsewhere on the device path, whose step then reads back B
     * ints instead of B * V floats when no row wants them: a greedy batch).
     */
    public DecodeResult decode(List<SequenceState> states, int[] tokens, boolean[] logitsWanted) {
        if (states.size() != tokens.length) throw new IllegalArgumentException(states.size() + " states but " + tokens.length + " tokens");
        if (logitsWanted.length != tokens.length) {
            throw new IllegalArgumentException(logitsWanted.length + " logit flags but " + tokens.length + " tokens");
        }
        for (int i = 0; i < tokens.length; i++) checkRows(new int[]{tokens[i]}, states.get(i).position(), 1, "sequence");
        if (residentDecode && !states.isEmpty()) return residentDecoder().decode(states, tokens, logitsWanted);
        float[][] logits = onHost(Batch.decode(states), tokens, java.util.stream.IntStream.range(0, tokens.length).toArray());
        int[] argmax = new int[logits.length];
        for (int i = 0; i < logits.length; i++) argmax[i] = io.lightmesh.engine.generate.Sampler.argmax(logits[i]);
        return new DecodeResult(argmax, logits);
    }

    /**
     * Whether the last decode step ran as the device's fused step (seven kernel launches a layer for the whole batch,
     * {@link ResidentDecoder}); false before the first device step and on the host path.
     */
    public boolean lastDecodeFused() {
        ResidentDecoder r;
        synchronized (this) { r = resident; }
        return r != null && r.lastStepFused();
    }

    /** Kernel launches of the last device decode step (benchmarks, tests), or -1 where none ran or none are counted. */
    public long lastDecodeLaunches() {
        ResidentDecoder r;
        synchronized (this) { r = resident; }
        return r == null ? -1 : r.lastStepLaunches();
    }

    /**
     * The device's per-kernel times since the last call (then reset), where the device path ran and profiles them
     * (-Dlightmesh.opencl.profile=events|true); else null. Benchmarks call it before and after what they time.
     */
    public io.lightmesh.engine.backend.DeviceOps.KernelTimes kernelTimes() {
        ResidentDecoder r;
        synchronized (this) { r = resident; }
        return r == null ? null : r.kernelTimes();
    }

    /** The device's decode kernel set (benchmarks print it), or null off the device path. */
    public String decodeKernelSet() {
        ResidentDecoder r;
        synchronized (this) { r = resident; }
        return r == null ? null : r.decodeKernelSet();
    }

    /**
     * The device kernel forms the resident path runs (prefill routing, decode kernels and products, fused or per
     * operation steps), as workers report them; null off the device path.
     */
    public String deviceKernels() {
        if (!residentDecode && !residentPrefill) return null;
        return residentDecoder().kernelForms();
    }

    /**
     * Blocking transfers and finishes on the device so far (each drains its queue: benchmarks count a prefill's), or -1
     * without a device or where it does not count them.
     */
    public long hostSyncs() {
        io.lightmesh.engine.backend.DeviceOps d = ops.resident();
        return d == null ? -1 : d.hostSyncs();
    }

    /** Whether the last device prefill chunk was routed and grouped on the device (-Dlightmesh.prefill.deviceRoute). */
    public boolean lastPrefillRouted() {
        ResidentDecoder r;
        synchronized (this) { r = resident; }
        return r != null && r.lastPrefillRouted();
    }

    /** Whether decode steps run on the device-resident path. */
    public boolean decodesOnDevice() { return residentDecode; }

    /** Whether prefill runs on the device-resident path. */
    public boolean prefillsOnDevice() { return residentPrefill; }

    /** The path this model's forward pass takes (device or host, experts local or remote, micro-batching). */
    public ForwardPath path() {
        return new ForwardPath(residentDecode, residentPrefill, !ResidentDecoder.hostsAll(config, experts), pingPong);
    }

    private synchronized ResidentDecoder residentDecoder() {
        if (resident == null) {
            resident = new ResidentDecoder(config, ops.resident(), embed, lmHead, finalNorm, pass, experts, pingPong, fusedDecode);
        }
        return resident;
    }

    /**
     * One step on the host's arrays ({@link ForwardPass} over {@link HostLayerOps}): the batch's rows through every
     * layer, each sequence advanced; returns the logits [m][V] of rows {@code logitRows}. Tokens and positions are
     * checked by the callers.
     */
    private float[][] onHost(Batch batch, int[] tokens, int[] logitRows) {
        HostLayerOps rows = new HostLayerOps(config, ops, experts, pass.layers(), embed, finalNorm, batch, tokens);
        pass.run(List.of(rows));
        for (Batch.Segment s : batch.segments()) s.state().advance(s.count());
        int hidden = config.hiddenSize();
        float[][] out = new float[logitRows.length][];
        for (int i = 0; i < out.length; i++) { // the LM head on each wanted row of the final-normed x
            int r = logitRows[i];
            out[i] = new float[config.vocabSize()];
            ops.matmul(java.util.Arrays.copyOfRange(rows.x, r * hidden, (r + 1) * hidden), 1, lmHead, out[i]);
        }
        return out;
    }

    @Override
    public void close() {
        synchronized (this) {
            if (resident != null) resident.close();
            resident = null;
        }
        weights.close();
    }
}
