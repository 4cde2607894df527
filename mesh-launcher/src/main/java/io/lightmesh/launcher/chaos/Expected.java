package io.lightmesh.launcher.chaos;

import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.generate.SamplingParams;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.Services;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * What the mesh must answer: the in-process engine's greedy output for a prompt's token ids, on the same backend as
 * the services, computed once per (prompt, max tokens) and kept. The oracle of the chaos harness.
 */
final class Expected implements AutoCloseable {
    /** The engine's new tokens (eos excluded, as the API returns them) and their text. */
    record Answer(List<Integer> tokens, String text) {}

    private final MeshModel model;
    private final Map<String, Answer> answers = new ConcurrentHashMap<>();

    Expected(Path checkpoint, String backend) throws IOException {
        this.model = MeshModel.load(checkpoint, Services.backend(backend));
    }

    List<Integer> encode(String text) { return Arrays.stream(model.tokenizer().encode(text)).boxed().toList(); }

    Answer answer(List<Integer> prompt, int maxTokens) {
        return answers.computeIfAbsent(prompt + "/" + maxTokens, k -> {
            synchronized (this) { // one engine pass at a time: the harness's own CPU stays small beside the mesh
                Generator.Result r = Generator.generate(model.model(), model.tokenizer(), prompt.stream().mapToInt(Integer::intValue).toArray(),
                        SamplingParams.greedy(maxTokens), null);
                return new Answer(Arrays.stream(r.tokens()).boxed().toList(), r.text());
            }
        });
    }

    @Override
    public void close() { model.close(); }
}
