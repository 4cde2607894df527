package io.lightmesh.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintStream;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code lightmesh}: the top of the command tree; alone it prints the usage and fails. */
@Command(name = "lightmesh", mixinStandardHelpOptions = true, versionProvider = LightMeshCommand.Version.class,
        description = "Serve and run hybrid lightning-attention MoE models of the MiniMax-M1 family.",
        subcommands = {GenerateCommand.class, ScoreCommand.class, TokenizerCommands.Tokenize.class,
                TokenizerCommands.Detokenize.class, InfoCommand.class, CommandLine.HelpCommand.class},
        footer = {"", "Run 'lightmesh <command> --help' for a command's options. Examples:",
                "  lightmesh generate --prompt 'The capital of France is' --max-new-tokens 16",
                "  lightmesh serve              (OpenAI API on http://127.0.0.1:8080/v1, gRPC on 127.0.0.1:9000)"})
final class LightMeshCommand implements Callable<Integer> {
    /** The commands another parser owns ({@link ForwardCommand}), with their one-line descriptions. */
    static final Map<String, String> FORWARDED = forwarded();

    private final PrintStream out;
    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    LightMeshCommand(PrintStream out) { this.out = out; }

    PrintStream out() { return out; }

    @Override
    public Integer call() {
        spec.commandLine().usage(out);
        return 2;
    }

    private static Map<String, String> forwarded() {
        Map<String, String> m = new java.util.LinkedHashMap<>();
        m.put("bench", "The engine's benchmark: prefill and decode speed against the machine's bandwidth.");
        m.putAll(io.lightmesh.launcher.Main.COMMANDS);
        return m;
    }

    /** The version of the jar (its manifest), or "development" when run from classes. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = LightMeshCommand.class.getPackage().getImplementationVersion();
            return new String[]{"lightmesh " + (v == null ? "(development build)" : v)};
        }
    }
}
