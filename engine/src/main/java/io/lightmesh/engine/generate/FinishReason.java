package io.lightmesh.engine.generate;

/** Why a generation ended; the names match what the OpenAI API reports (lower-cased). */
public enum FinishReason {
    /** The model ended its turn (eos) or a stop string appeared. */
    STOP,
    /** max_new_tokens was reached. */
    LENGTH,
    /** The client went away or cancelled. */
    CANCELLED
}
