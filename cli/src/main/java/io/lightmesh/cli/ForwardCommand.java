package io.lightmesh.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * A command whose options another parser owns: the mesh launcher's commands ({@code serve}, {@code router}, ...,
 * picocli too, through its {@code Flags}) and the engine's {@code bench}. Every argument after the command's name
 * is handed on unparsed, {@code --help} included; {@code serve} and {@code bench-serve} get the demo model when no
 * {@code --model} is given.
 */
@Command
final class ForwardCommand implements Callable<Integer> {
    @ParentCommand LightMeshCommand parent;
    @Parameters(arity = "0..*", paramLabel = "OPTIONS", description = "See 'lightmesh <command> --help'.")
    List<String> args = new ArrayList<>();

    private final String name;

    ForwardCommand(String name) { this.name = name; }

    @Override
    public Integer call() throws Exception {
        String[] argv = args.toArray(String[]::new);
        if (name.equals("bench")) return io.lightmesh.engine.bench.EngineBench.run(argv, parent.out());
        String[] withName = new String[argv.length + 1];
        withName[0] = name;
        System.arraycopy(argv, 0, withName, 1, argv.length);
        io.lightmesh.launcher.Main.run(withDefaultModel(withName));
        return 0;
    }

    /** argv with {@code --model <demo>} appended when absent (not for kafka, nor for --help). */
    private static String[] withDefaultModel(String[] argv) throws IOException {
        List<String> a = Arrays.asList(argv);
        if (argv[0].equals("kafka") || argv[0].equals("bench-pool") || a.contains("--model") || a.stream().anyMatch(s -> s.startsWith("--model="))
                || a.contains("--help") || a.contains("-h") || System.getenv("LIGHTMESH_MODEL") != null) {
            return argv;
        }
        String[] out = Arrays.copyOf(argv, argv.length + 2);
        out[argv.length] = "--model";
        out[argv.length + 1] = DemoModel.path().toString();
        return out;
    }
}
