package io.lightmesh.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.ParentCommand;

import java.util.concurrent.Callable;

/** {@code info}: the model's shape, parameter counts and the backend it would run on. */
@Command(name = "info", mixinStandardHelpOptions = true, description = "Print the model's shape.")
final class InfoCommand implements Callable<Integer> {
    @ParentCommand LightMeshCommand parent;
    @Mixin ModelOptions modelOptions;

    @Override
    public Integer call() throws Exception {
        try (LoadedModel m = modelOptions.open()) {
            var c = m.model().config();
            ObjectNode o = new ObjectMapper().valueToTree(c);
            o.put("parameters", c.parameterCount());
            o.put("active_parameters", c.activeParameterCount());
            o.put("dir", m.dir().toAbsolutePath().toString());
            o.put("backend", m.model().ops().name());
            parent.out().println(o.toPrettyString());
        }
        return 0;
    }
}
