package io.lightmesh.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

import java.util.concurrent.Callable;

/** {@code tokenize} and {@code detokenize}: the model's tokenizer alone. */
final class TokenizerCommands {
    private TokenizerCommands() {}

    @Command(name = "tokenize", mixinStandardHelpOptions = true, description = "Print {\"ids\": [...]} of a text.")
    static final class Tokenize implements Callable<Integer> {
        @ParentCommand LightMeshCommand parent;
        @Mixin ModelOptions modelOptions;
        @Option(names = "--text", required = true, paramLabel = "TEXT") String text;

        @Override
        public Integer call() throws Exception {
            try (LoadedModel m = modelOptions.open()) {
                ObjectNode o = new ObjectMapper().createObjectNode();
                ArrayNode ids = o.putArray("ids");
                for (int t : m.requireTokenizer().encode(text)) ids.add(t);
                parent.out().println(o);
            }
            return 0;
        }
    }

    @Command(name = "detokenize", mixinStandardHelpOptions = true, description = "Print the text of token ids.")
    static final class Detokenize implements Callable<Integer> {
        @ParentCommand LightMeshCommand parent;
        @Mixin ModelOptions modelOptions;
        @Option(names = "--ids", required = true, paramLabel = "1,2,3") String ids;

        @Override
        public Integer call() throws Exception {
            int[] tokens = IdList.parse("--ids", ids);
            try (LoadedModel m = modelOptions.open()) {
                int v = m.requireTokenizer().vocabSize();
                for (int id : tokens) if (id < 0 || id >= v) throw new UsageException("--ids: " + id + " outside the vocabulary 0.." + (v - 1));
                parent.out().println(m.tokenizer().decode(tokens));
            }
            return 0;
        }
    }
}
