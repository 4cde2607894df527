package io.lightmesh.engine.generate;

import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.tokenizer.Tokenizer;

import java.util.List;
import java.util.function.Consumer;

/** Generates for one sequence in this process: prefill the prompt, then decode token by token. */
public final class Generator {

    /** The outcome: new token ids (eos excluded), their text, and why it stopped. */
    public record Result(int[] tokens, String text, FinishReason reason, int promptTokens) {}

    private Generator() {}

    public static Result generate(MiniMaxModel model, Tokenizer tokenizer, int[] prompt, SamplingParams params,
                                  Consumer<Generation.Step> listener) {
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt is empty");
        Generation g = new Generation("local", model.newState(), params, tokenizer);
        StringBuilder text = new StringBuilder();
        if (!g.finished()) {
            Generation.Step step = g.accept(model.prefill(g.state(), prompt));
            while (true) {
                text.append(step.text());
                if (listener != null) listener.accept(step);
                if (step.finished()) break;
                step = g.accept(model.decode(List.of(g.state()), new int[]{g.nextInput()})[0]);
            }
        }
        return new Result(g.tokens(), text.toString(), g.finishReason(), prompt.length);
    }
}
