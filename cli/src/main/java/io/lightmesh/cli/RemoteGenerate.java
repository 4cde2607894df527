package io.lightmesh.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.client.Completion;
import io.lightmesh.client.Delta;
import io.lightmesh.client.GenerationRequest;
import io.lightmesh.client.GenerationStream;
import io.lightmesh.client.LightMeshClient;
import io.lightmesh.client.LightMeshException;

import java.io.PrintStream;
import java.util.ArrayList;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/** {@code generate --target HOST:PORT}: the same request sent through a running mesh's public gRPC API. */
final class RemoteGenerate {
    private RemoteGenerate() {}

    static int run(Args a, PrintStream out) {
        GenerationRequest.Builder b = a.has("--ids")
                ? GenerationRequest.tokens(Arrays.stream(a.ints("--ids")).boxed().toList())
                : GenerationRequest.prompt(a.get("--prompt", ""));
        b.temperature(a.getFloat("--temperature", 0f)).topK(a.getInt("--top-k", 0)).topP(a.getFloat("--top-p", 1f))
                .seed(a.getLong("--seed", 0L)).maxTokens(a.getInt("--max-new-tokens", 64))
                .maxThinkingTokens(a.getInt("--max-thinking-tokens", 0)).returnTokenIds(true);
        if (!a.all("--stop").isEmpty()) b.stop(a.all("--stop"));
        ChoiceFlags choices = new ChoiceFlags(a);
        choices.apply(b);
        boolean json = a.flag("--json");
        LightMeshClient.Builder cb = LightMeshClient.builder().target(a.get("--target", null)).apiKey(a.get("--api-key", null));
        if (a.has("--tls-ca")) cb.tls(Path.of(a.get("--tls-ca", null)));   // a mesh with TLS on its public ports
        else cb.plaintext();
        try (LightMeshClient client = cb.build();
             GenerationStream stream = client.stream(b.build())) {
            List<Delta> deltas = new ArrayList<>();
            for (Delta d : stream) {
                deltas.add(d);
                if (!json && choices.n == 1) {
                    out.print(d.reasoning().isEmpty() ? "" : d.reasoning());
                    out.print(d.text());
                    out.flush();
                }
            }
            Completion c = Completion.of(deltas);
            if (json) {
                ObjectNode o = new ObjectMapper().createObjectNode();
                var ids = o.putArray("ids");
                c.tokenIds().forEach(ids::add);
                o.put("text", c.text());
                o.put("finish_reason", c.finishReason().name().toLowerCase());
                if (choices.logprobs >= 0) ChoiceFlags.sdkJson(o.putArray("logprobs"), c.logprobs());
                if (choices.promptLogprobs >= 0) ChoiceFlags.sdkJson(o.putArray("prompt_logprobs"), c.promptLogprobs());
                if (choices.n > 1) {
                    var all = o.putArray("choices");
                    for (io.lightmesh.client.Choice ch : c.choices()) {
                        ObjectNode x = all.addObject();
                        ch.tokenIds().forEach(x.putArray("ids")::add);
                        x.put("text", ch.text()).put("finish_reason", ch.finishReason().name().toLowerCase());
                        if (choices.logprobs >= 0) ChoiceFlags.sdkJson(x.putArray("logprobs"), ch.logprobs());
                    }
                }
                out.println(o);
            } else if (choices.n > 1) {
                Completion whole = c;
                for (io.lightmesh.client.Choice ch : whole.choices()) out.println("--- choice " + ch.index() + " ---\n" + ch.text());
            } else {
                out.println();
            }
            return 0;
        } catch (LightMeshException e) {
            throw new IllegalStateException("the mesh at " + a.get("--target", null) + " answered " + e.code() + ": "
                    + e.description());
        }
    }
}
