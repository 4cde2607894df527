package io.lightmesh.mesh;

import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.proto.v1.FinishReason;
import io.lightmesh.proto.v1.GenerationSpec;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * The aggregated path with the mesh's exact token rules: prefill the prompt, draw, decode one token at a time. The
 * baseline the mesh is compared against (tests: token for token; bench-serve: speed).
 */
public final class InProcessGeneration {
    private InProcessGeneration() {}

    public record Result(List<Integer> tokens, FinishReason finish) {}

    public static Result run(MiniMaxModel model, StopRules rules, GenerationSpec spec, IntConsumer onToken) {
        long seed = spec.getSampling().hasSeed() ? spec.getSampling().getSeed() : 0L;
        SequenceState s = model.newState();
        int[] prompt = spec.getPromptTokensList().stream().mapToInt(Integer::intValue).toArray();
        float[] logits = model.prefill(s, prompt);
        List<Integer> out = new ArrayList<>();
        while (true) {
            int token = TokenPicker.pick(logits, spec.getSampling(), seed, out.size());
            out.add(token);
            onToken.accept(token);
            FinishReason f = rules.after(spec, token, out.size());
            if (f != FinishReason.FINISH_REASON_UNSPECIFIED) return new Result(out, f);
            logits = model.decode(List.of(s), new int[]{token})[0];
        }
    }
}
