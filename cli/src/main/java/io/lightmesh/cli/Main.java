package io.lightmesh.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.generate.Generator;
import io.lightmesh.engine.generate.SamplingParams;
import io.lightmesh.engine.model.SequenceState;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

/** {@code ./lightmesh}: the command-line entry point. Every subcommand accepts {@code --backend} and {@code --model}. */
public final class Main {
    static final String USAGE = """
            usage: lightmesh <command> [options]

            commands:
              generate    --model DIR (--prompt TEXT | --ids 1,2,3) [--max-new-tokens N] [--temperature T]
                          [--top-k K] [--top-p P] [--seed S] [--stop STR]... [--max-thinking-tokens N] [--json]
                          [--n N] [--logprobs K] [--prompt-logprobs K] [--presence-penalty P]
                          [--frequency-penalty P] [--repetition-penalty R]
                          [--target HOST:PORT [--tls-ca CA.pem] [--api-key KEY]]  (through a running mesh instead of the
                          in-process engine; --tls-ca when its router serves TLS, trusting that CA)
              score       --model DIR --ids 1,2,3,... --prefill K --positions p1,p2,...
                          tokens 0..K-1 go through one prefill call, the rest one at a time through decode;
                          prints {"logits": {"p": [...]}} where position p's logits predict token p+1
              tokenize    --model DIR --text TEXT          prints {"ids": [...]}
              detokenize  --model DIR --ids 1,2,3          prints the text
              bench       [--size tiny|100m|demo] [--prompt-lengths 1024,4096] [--decode-tokens N] ...
              info        --model DIR                      prints the model's shape
              serve       [--model DIR] [--http-port 8080] [--grpc-port 9000] [--kafka HOST:PORT] [--experts N]
                          [--prefix-cache-gib G]  (each prefill worker's prefix cache; 0: off; default 1)
                          the whole mesh on this machine: Kafka (KRaft child process unless --kafka), router,
                          prefill and decode workers, expert shards; Ctrl-C stops everything
                          [--autoscale-experts MIN:MAX] [--expert-slots K] [--rebalance-interval-s 60]
                          [--imbalance-threshold 1.25]: the elastic expert pool (GET /admin/placement)
              router | prefill | decode | expert | kafka [options]
                          one service on its own, for real deployments: its Quarkus application
                          (<module>/target/quarkus-app/quarkus-run.jar; see mesh-launcher/README.md)
              bench-serve [--model DIR] ...                drives a mesh like vLLM's serving benchmark

            common options:
              --model DIR       a checkpoint directory (config.json + safetensors [+ tokenizer.json]);
                                default: the built-in demo model
              --backend NAME    auto | reference | vector | opencl (default auto)
            """;

    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] argv) {
        System.exit(run(argv, System.out, System.err));
    }

    public static int run(String[] argv, PrintStream out, PrintStream err) {
        if (argv.length == 0 || argv[0].equals("-h") || argv[0].equals("--help") || argv[0].equals("help")) {
            out.print(USAGE);
            return argv.length == 0 ? 2 : 0;
        }
        try {
            return switch (argv[0]) {
                case "generate" -> generate(argv, out);
                case "score" -> score(argv, out);
                case "tokenize" -> tokenize(argv, out);
                case "detokenize" -> detokenize(argv, out);
                case "info" -> info(argv, out);
                case "bench" -> bench(Arrays.copyOfRange(argv, 1, argv.length), out);
                case "serve", "router", "prefill", "decode", "expert", "kafka" -> serve(argv);
                case "bench-serve" -> benchServe(argv);
                default -> throw new Args.UsageException("unknown command '" + argv[0] + "'");
            };
        } catch (Args.UsageException e) {
            err.println("lightmesh: " + e.getMessage());
            err.println("run 'lightmesh --help' for usage");
            return 2;
        } catch (IllegalArgumentException | IOException | IllegalStateException e) {
            err.println("lightmesh: error: " + e.getMessage());
            return 1;
        }
    }

    private static final Set<String> COMMON = Set.of("--model", "--backend");

    private static Args parse(String[] argv, Set<String> valued, Set<String> switches) {
        java.util.HashSet<String> v = new java.util.HashSet<>(valued);
        v.addAll(COMMON);
        return new Args(argv, 1, v, switches);
    }

    private static LoadedModel open(Args a) throws IOException {
        Path dir = a.has("--model") ? Path.of(a.get("--model", null)) : DemoModel.path();
        return LoadedModel.open(dir, Backends.create(a.get("--backend", "auto")));
    }

    private static int generate(String[] argv, PrintStream out) throws IOException {
        Set<String> valued = new java.util.HashSet<>(Set.of("--prompt", "--ids", "--max-new-tokens", "--temperature", "--top-k", "--top-p",
                "--seed", "--stop", "--max-thinking-tokens", "--target", "--tls-ca", "--api-key"));
        valued.addAll(ChoiceFlags.VALUED);
        Args a = parse(argv, valued, Set.of("--json"));
        if ((a.has("--tls-ca") || a.has("--api-key")) && !a.has("--target")) {
            throw new Args.UsageException("--tls-ca and --api-key are for a running mesh: give --target HOST:PORT too");
        }
        if (a.has("--prompt") == a.has("--ids")) throw new Args.UsageException("give exactly one of --prompt or --ids");
        if (a.has("--target")) return RemoteGenerate.run(a, out);
        SamplingParams params = new SamplingParams(a.getFloat("--temperature", 0f), a.getInt("--top-k", 0),
                a.getFloat("--top-p", 1f), a.getLong("--seed", 0L), a.getInt("--max-new-tokens", 64),
                a.all("--stop"), a.getInt("--max-thinking-tokens", 0));
        ChoiceFlags choices = new ChoiceFlags(a);
        params = choices.apply(params);
        try (LoadedModel m = open(a)) {
            int[] prompt = a.has("--ids") ? a.ints("--ids") : m.requireTokenizer().encode(a.get("--prompt", ""));
            boolean json = a.flag("--json");
            List<Generator.Result> rs = Generator.generate(m.model(), m.tokenizer(), prompt, params, choices.n, choices.promptLogprobs,
                    json || choices.n > 1 ? null : (i, step) -> { out.print(step.text()); out.flush(); });
            if (json) {
                ObjectNode o = JSON.createObjectNode();
                result(o, rs.getFirst(), m, choices);
                if (choices.promptLogprobs >= 0) ChoiceFlags.engineJson(o.putArray("prompt_logprobs"), rs.getFirst().promptLogprobs(), m.tokenizer());
                if (choices.n > 1) {
                    ArrayNode all = o.putArray("choices");
                    for (Generator.Result r : rs) result(all.addObject(), r, m, choices);
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
    private static void result(ObjectNode o, Generator.Result r, LoadedModel m, ChoiceFlags choices) {
        ArrayNode ids = o.putArray("ids");
        for (int t : r.tokens()) ids.add(t);
        o.put("text", m.tokenizer() == null ? "" : r.text());
        o.put("finish_reason", r.reason().name().toLowerCase());
        if (choices.logprobs >= 0) ChoiceFlags.engineJson(o.putArray("logprobs"), r.logprobs(), m.tokenizer());
    }

    private static int score(String[] argv, PrintStream out) throws IOException {
        Args a = parse(argv, Set.of("--ids", "--prefill", "--positions"), Set.of());
        int[] ids = a.ints("--ids");
        int k = a.getInt("--prefill", ids.length);
        int[] positions = a.ints("--positions");
        if (ids.length == 0) throw new Args.UsageException("--ids is empty");
        if (k < 1 || k > ids.length) throw new Args.UsageException("--prefill must be in 1.." + ids.length + ", got " + k);
        for (int p : positions) {
            if (p < 0 || p >= ids.length) throw new Args.UsageException("--positions: " + p + " outside 0.." + (ids.length - 1));
        }
        try (LoadedModel m = open(a)) {
            SequenceState s = m.model().newState();
            float[][] byPosition = new float[ids.length][];
            int[] prefillRows = Arrays.stream(positions).filter(p -> p < k).distinct().toArray();
            float[][] pre = prefillRows.length > 0
                    ? m.model().prefill(s, Arrays.copyOf(ids, k), prefillRows)
                    : new float[][]{m.model().prefill(s, Arrays.copyOf(ids, k))};
            for (int i = 0; i < prefillRows.length; i++) byPosition[prefillRows[i]] = pre[i];
            int last = Arrays.stream(positions).max().orElse(-1);
            for (int p = k; p <= last; p++) byPosition[p] = m.model().decode(List.of(s), new int[]{ids[p]})[0];
            ObjectNode o = JSON.createObjectNode();
            ObjectNode logits = o.putObject("logits");
            for (int p : positions) {
                ArrayNode row = logits.putArray(Integer.toString(p));
                for (float v : byPosition[p]) row.add(v);
            }
            out.println(o);
        }
        return 0;
    }

    private static int tokenize(String[] argv, PrintStream out) throws IOException {
        Args a = parse(argv, Set.of("--text"), Set.of());
        String text = a.required("--text");
        try (LoadedModel m = open(a)) {
            ObjectNode o = JSON.createObjectNode();
            ArrayNode ids = o.putArray("ids");
            for (int t : m.requireTokenizer().encode(text)) ids.add(t);
            out.println(o);
        }
        return 0;
    }

    private static int detokenize(String[] argv, PrintStream out) throws IOException {
        Args a = parse(argv, Set.of("--ids"), Set.of());
        int[] ids = a.ints("--ids");
        try (LoadedModel m = open(a)) {
            int v = m.requireTokenizer().vocabSize();
            for (int id : ids) if (id < 0 || id >= v) throw new Args.UsageException("--ids: " + id + " outside the vocabulary 0.." + (v - 1));
            out.println(m.tokenizer().decode(ids));
        }
        return 0;
    }

    /**
     * The whole mesh on this machine (Kafka broker, router, prefill, decode, expert shards) until Ctrl-C, or one
     * service of it ({@code router}, {@code prefill}, {@code decode}, {@code expert}, {@code kafka}).
     */
    private static int serve(String[] argv) throws IOException {
        String[] args = withDefaultModel(argv);
        try {
            io.lightmesh.launcher.Main.main(args);
            return 0;
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IllegalStateException("the mesh failed: " + e, e);
        }
    }

    private static int benchServe(String[] argv) throws IOException {
        String[] args = withDefaultModel(argv);
        try {
            io.lightmesh.launcher.BenchServe.main(Arrays.copyOfRange(args, 1, args.length));
            return 0;
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IllegalStateException("bench-serve failed: " + e, e);
        }
    }

    /** argv with {@code --model <demo>} appended when absent. */
    private static String[] withDefaultModel(String[] argv) throws IOException {
        if (argv[0].equals("kafka") || Arrays.asList(argv).contains("--model") || System.getenv("LIGHTMESH_MODEL") != null) {
            return argv;
        }
        String[] out = Arrays.copyOf(argv, argv.length + 2);
        out[argv.length] = "--model";
        out[argv.length + 1] = DemoModel.path().toString();
        return out;
    }

    private static int bench(String[] args, PrintStream out) throws IOException {
        return io.lightmesh.engine.bench.EngineBench.run(args, out);
    }

    private static int info(String[] argv, PrintStream out) throws IOException {
        Args a = parse(argv, Set.of(), Set.of());
        try (LoadedModel m = open(a)) {
            var c = m.model().config();
            ObjectNode o = JSON.valueToTree(c);
            o.put("parameters", c.parameterCount());
            o.put("active_parameters", c.activeParameterCount());
            o.put("dir", m.dir().toAbsolutePath().toString());
            o.put("backend", m.model().ops().name());
            out.println(o.toPrettyString());
        }
        return 0;
    }
}
