package io.lightmesh.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.engine.model.SequenceState;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code score}: the logits at chosen positions, the prompt's first K tokens through prefill and the rest through decode. */
@Command(name = "score", sortOptions = false, mixinStandardHelpOptions = true,
        description = {"Print the logits at chosen positions: tokens 0..K-1 go through one prefill call, the rest one at a",
                "time through decode; prints {\"logits\": {\"p\": [...]}} where position p's logits predict token p+1."})
final class ScoreCommand implements Callable<Integer> {
    @ParentCommand LightMeshCommand parent;
    @Mixin ModelOptions modelOptions;

    @Option(names = "--ids", required = true, paramLabel = "1,2,3", description = "The tokens.")
    String ids;
    @Option(names = "--prefill", paramLabel = "K", description = "Tokens through prefill (default: all).")
    Integer prefill;
    @Option(names = "--positions", required = true, paramLabel = "p1,p2", description = "Positions whose logits to print.")
    String positions;

    @Override
    public Integer call() throws Exception {
        int[] tokens = IdList.parse("--ids", ids);
        int k = prefill == null ? tokens.length : prefill;
        int[] at = IdList.parse("--positions", positions);
        if (tokens.length == 0) throw new UsageException("--ids is empty");
        if (k < 1 || k > tokens.length) throw new UsageException("--prefill must be in 1.." + tokens.length + ", got " + k);
        for (int p : at) {
            if (p < 0 || p >= tokens.length) throw new UsageException("--positions: " + p + " outside 0.." + (tokens.length - 1));
        }
        try (LoadedModel m = modelOptions.open()) {
            SequenceState s = m.model().newState();
            float[][] byPosition = new float[tokens.length][];
            int[] prefillRows = Arrays.stream(at).filter(p -> p < k).distinct().toArray();
            float[][] pre = prefillRows.length > 0
                    ? m.model().prefill(s, Arrays.copyOf(tokens, k), prefillRows)
                    : new float[][]{m.model().prefill(s, Arrays.copyOf(tokens, k))};
            for (int i = 0; i < prefillRows.length; i++) byPosition[prefillRows[i]] = pre[i];
            int last = Arrays.stream(at).max().orElse(-1);
            for (int p = k; p <= last; p++) byPosition[p] = m.model().decode(List.of(s), new int[]{tokens[p]})[0];
            ObjectNode o = new ObjectMapper().createObjectNode();
            ObjectNode logits = o.putObject("logits");
            for (int p : at) {
                ArrayNode row = logits.putArray(Integer.toString(p));
                for (float v : byPosition[p]) row.add(v);
            }
            parent.out().println(o);
        }
        return 0;
    }
}
