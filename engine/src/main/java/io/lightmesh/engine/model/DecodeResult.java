package io.lightmesh.engine.model;

/**
 * What one decode step gives back for each of its B rows: the greedy choice (the index of the largest logit, as
 * {@link io.lightmesh.engine.generate.Sampler#argmax}) always, and the logits [V] only for the rows that asked for them
 * (a sampled, penalised or log-probability row); {@code logits[i]} is null for a row that did not. On the device path
 * a step where no row asks reads back B ints instead of B * V floats, and the host scans nothing.
 *
 * @param argmax [B] each row's greedy next token
 * @param logits [B][V], a row null where it was not asked for (the host path fills every row)
 */
public record DecodeResult(int[] argmax, float[][] logits) {
    /** Whether every row's logits came back (the host path, or every row asked). */
    public boolean allLogits() {
        for (float[] l : logits) if (l == null) return false;
        return true;
    }
}
