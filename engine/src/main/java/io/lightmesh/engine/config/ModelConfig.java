package io.lightmesh.engine.config;

/**
 * The shape of a MiniMax-M1-family model, whichever config dialect it was read from.
 *
 * @param softmaxLayer  per layer: true for softmax (full) attention, false for lightning attention
 * @param rotaryDim     RoPE covers the first rotaryDim dims of each softmax head (NeoX pairs i, i + rotaryDim/2)
 * @param blockSize     lightning attention prefill block (256 in the M1 dialect)
 */
public record ModelConfig(
        String modelType,
        int vocabSize,
        int hiddenSize,
        int numLayers,
        int numHeads,
        int numKvHeads,
        int headDim,
        int rotaryDim,
        double ropeTheta,
        int numExperts,
        int topK,
        int intermediateSize,
        double rmsNormEps,
        boolean[] softmaxLayer,
        float linearAttnAlpha, float linearAttnBeta,
        float fullAttnAlpha, float fullAttnBeta,
        float mlpAlpha, float mlpBeta,
        int blockSize,
        long maxPositions,
        boolean tieWordEmbeddings) {

    /** The lightning output norm's epsilon: fixed by the architecture, not the config. */
    public static final double LIGHTNING_NORM_EPS = 1e-6;

    public boolean isSoftmax(int layer) { return softmaxLayer[layer]; }

    public int numSoftmaxLayers() {
        int n = 0;
        for (boolean b : softmaxLayer) if (b) n++;
        return n;
    }

    public int numLightningLayers() { return numLayers - numSoftmaxLayers(); }

    /** H*D: the attention width, which need not equal hiddenSize (M1: 8192 vs 6144). */
    public int attnDim() { return numHeads * headDim; }

    public int kvDim() { return numKvHeads * headDim; }

    /** Parameters in the checkpoint (embedding and LM head counted apart when untied). */
    public long parameterCount() {
        long h = hiddenSize, a = attnDim(), kv = kvDim();
        long total = (long) vocabSize * h * (tieWordEmbeddings ? 1 : 2) + h;
        for (int l = 0; l < numLayers; l++) {
            total += 2 * h;
            total += softmaxLayer[l] ? h * a + 2 * h * kv + a * h : 3 * a * h + a * h + a + h * a;
            total += (long) numExperts * h + (long) numExperts * 3 * h * intermediateSize;
        }
        return total;
    }

    /** Parameters read per token in decode: attention + top-k experts + router + LM head row-products. */
    public long activeParameterCount() {
        long h = hiddenSize, a = attnDim(), kv = kvDim();
        long total = (long) vocabSize * h + h;
        for (int l = 0; l < numLayers; l++) {
            total += 2 * h;
            total += softmaxLayer[l] ? h * a + 2 * h * kv + a * h : 3 * a * h + a * h + a + h * a;
            total += (long) numExperts * h + (long) topK * 3 * h * intermediateSize;
        }
        return total;
    }
}
