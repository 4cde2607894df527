package io.lightmesh.mesh;

import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerationSpec;

/**
 * When generation ends, checked after each new token: the end-of-sentence token (unless ignore_eos), then
 * max_new_tokens. Stop strings and the thinking budget need the tokenizer's text and join when it lands in the
 * engine (the engine's Generator owns them for the in-process path).
 */
public final class StopRules {
    private final int eosId;

    /** @param eosId the end-of-sentence id, or -1 when the model has none */
    public StopRules(int eosId) { this.eosId = eosId; }

    /**
     * @param token     the token just generated
     * @param generated tokens generated so far, this one included
     * @return FINISH_REASON_UNSPECIFIED to continue, else why to stop
     */
    public FinishReason after(GenerationSpec spec, int token, int generated) {
        if (token == eosId && !spec.getSampling().getIgnoreEos()) return FinishReason.FINISH_REASON_STOP;
        if (generated >= spec.getSampling().getMaxNewTokens()) return FinishReason.FINISH_REASON_LENGTH;
        return FinishReason.FINISH_REASON_UNSPECIFIED;
    }

    public int eosId() { return eosId; }
}
