package io.lightmesh.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.generate.SamplingParams;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code generate}: text or token ids continued by the in-process engine, or by a running mesh with {@code --target}. */
@Command(name = "generate", sortOptions = false, mixinStandardHelpOptions = true,
        description = "Continue a prompt with the in-process engine (or a running mesh with --target).")
final class GenerateCommand implements Callable<Integer> {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Prompts from this length on get a prefill progress note on a terminal. */
    static final int LONG_PROMPT = 512;

    @ParentCommand LightMeshCommand parent;
    @Mixin ModelOptions modelOptions;

    @Option(names = "--prompt", paramLabel = "TEXT", description = "The prompt as text (needs the model's tokenizer.json).")
    String prompt;
    @Option(names = "--ids", paramLabel = "1,2,3", description = "The prompt as token ids.")
    String ids;
    @Option(names = "--max-new-tokens", paramLabel = "N", defaultValue = "64", description = "Default: ${DEFAULT-VALUE}.")
    int maxNewTokens;
    @Option(names = "--temperature", paramLabel = "T", defaultValue = "0", description = "0: greedy (default).")
    float temperature;
    @Option(names = "--top-k", paramLabel = "K", defaultValue = "0", description = "0: off (default).")
    int topK;
    @Option(names = "--top-p", paramLabel = "P", defaultValue = "1", description = "1: off (default).")
    float topP;
    @Option(names = "--seed", paramLabel = "S", defaultValue = "0")
    long seed;
    @Option(names = "--stop", paramLabel = "STR", description = "Stop before this text (repeatable).")
    List<String> stop = new ArrayList<>();
    @Option(names = "--max-thinking-tokens", paramLabel = "N", defaultValue = "0", description = "Thinking budget; 0: none.")
    int maxThinkingTokens;
    @Option(names = "--json", description = "One JSON object: ids, text, finish_reason (and log-probabilities when asked).")
    boolean json;
    @Mixin ChoiceFlags choices;
    @Option(names = "--target", paramLabel = "HOST:PORT", description = "A running mesh's gRPC API instead of the in-process engine.")
    String target;
    @Option(names = "--tls-ca", paramLabel = "CA.pem", description = "With --target: its router serves TLS, trust this CA.")
    Path tlsCa;
    @Option(names = "--api-key", paramLabel = "KEY", description = "With --target: the mesh's API key (serve --api-key).")
    String apiKey;

    @Override
    public Integer call() throws Exception {
        PrintStream out = parent.out();
        if ((tlsCa != null || apiKey != null) && target == null) {
            throw new UsageException("--tls-ca and --api-key are for a running mesh: give --target HOST:PORT too");
        }
        if ((prompt != null) == (ids != null)) throw new UsageException("give exactly one of --prompt or --ids");
        choices.validate();
        if (target != null) return RemoteGenerate.run(this, out);
        SamplingParams params = new SamplingParams(temperature, topK, topP, seed, maxNewTokens, stop, maxThinkingTokens);
        params = choices.apply(params);
        try (LoadedModel m = modelOptions.open()) {
            int[] promptIds = ids != null ? IdList.parse("--ids", ids) : m.requireTokenizer().encode(prompt);
            List<Generator.Result> rs;
            // a long prompt's prefill takes a while before the first token: a note on a terminal until it comes
            try (Progress prefill = promptIds.length >= LONG_PROMPT ? Progress.of("prefilling " + promptIds.length + " prompt tokens") : null) {
                rs = Generator.generate(m.model(), m.tokenizer(), promptIds, params, choices.n, choices.promptLogprobs,
                        json || choices.n > 1 ? null : (i, step) -> {
                            if (prefill != null) prefill.close();
                            out.print(step.text());
                            out.flush();
                        });
            }
            if (json) {
                ObjectNode o = JSON.createObjectNode();
                result(o, rs.getFirst(), m);
                if (choices.promptLogprobs >= 0) ChoiceFlags.engineJson(o.putArray("prompt_logprobs"), rs.getFirst().promptLogprobs(), m.tokenizer());
                if (choices.n > 1) {
                    ArrayNode all = o.putArray("choices");
                    for (Generator.Result r : rs) result(all.addObject(), r, m);
                }
                out.println(o);
            } else if (choices.n > 1) {
                for (int i = 0; i < rs.size(); i++) out.println("--- choice " + i + " ---\n" + rs.get(i).text());
            } else {
                out.println();
            }
        }
        return 0;
    }

    /** One choice's part of generate's JSON: ids, text, finish reason, and the log-probabilities when asked for. */
    private void result(ObjectNode o, Generator.Result r, LoadedModel m) {
        ArrayNode a = o.putArray("ids");
        for (int t : r.tokens()) a.add(t);
        o.put("text", m.tokenizer() == null ? "" : r.text());
        o.put("finish_reason", r.reason().name().toLowerCase());
        if (choices.logprobs >= 0) ChoiceFlags.engineJson(o.putArray("logprobs"), r.logprobs(), m.tokenizer());
    }
}
