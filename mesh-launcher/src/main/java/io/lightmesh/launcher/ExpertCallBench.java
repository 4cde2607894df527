package io.lightmesh.launcher;

import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.model.LocalExperts;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.expert.ExpertShard;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.WireRows;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.RemoteExperts;
import io.lightmesh.proto.v1.ActivationDType;
import io.lightmesh.proto.v1.ExpertBatch;
import io.lightmesh.proto.v1.ExpertGrpc;
import io.lightmesh.proto.v1.ExpertResult;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * The cost of one layer's remote expert call, isolated, on the product's path: {@link RemoteExperts} -> gRPC
 * ComputeStream -> {@link ExpertShard} -> back, with the shards in processes of their own on this host (each a JVM
 * serving one shard on loopback, as the mesh's expert service does; {@code --shard-processes false} puts them in this
 * JVM instead). For each row count of {@code --rows}, the calls a decode or prefill step makes for one layer are
 * timed end to end and split into: the caller packing rows into batches, serializing and framing them, the shards'
 * parse of a batch, their compute, their serialization of the answer, the caller's parse of the answers and adding
 * them into the output; the rest of the round trip is the wire and the thread hand-offs. The shard-side parse and
 * serialization are timed in this process on batches and answers of the same size through the same marshallers
 * (the shards' own figure would have to travel in the answer it times). The same experts computed in this process
 * ({@link LocalExperts}, same backend) are timed beside them, and the remote outputs are checked against them:
 * identical bits on the fp32 wire.
 *
 * <p>Options (the first version's --tokens N is --rows N): --model DIR (a checkpoint; else a synthetic one of --shape tiny|medium|small|100m|h2048, --dtype
 * f32|bf16), --rows 1,8,64, --shards N (2), --calls N per row count (2000), --backend B (reference),
 * --shard-processes true|false (true), --wire f32|bf16|f32,bf16 (f32: the rows' element type on the wire; each one given is
 * measured in turn, on the same shards), --caller run|pool|async (run: {@code RemoteExperts.run} on the calling
 * thread; pool: the device path's micro-batch call before, {@code runAsync} running {@code run} on a virtual thread per
 * call, awaited; async: {@code runAsync} sent from the calling thread and completed on the transport's; a list is
 * measured in turn; default run), --call-class decode|prefill|unspecified (the batches' ExpertBatch.call_class: with
 * -Dlightmesh.shard.priority=true -Dlightmesh.shard.inlineDecode=true a decode batch finding the shard's device free is
 * computed on its transport thread; default unspecified). The shards get this JVM's {@code lightmesh.*} properties.
 */
public final class ExpertCallBench {
    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("--serve-shard")) {
            serveShard(args);
            return;
        }
        Flags f = new Flags("expert-call-bench", "The cost of one layer's remote expert call, isolated.", System.out, args, 0,
                "model", "shape", "dtype", "rows", "shards", "calls", "backend", "shard-processes", "layers", "wire", "tokens", "caller", "call-class");
        io.lightmesh.proto.v1.ExpertCallClass callClass = switch (f.get("call-class", "unspecified")) {
            case "decode" -> io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE;
            case "prefill" -> io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_PREFILL;
            case "unspecified" -> io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_UNSPECIFIED;
            default -> throw new IllegalArgumentException("--call-class decode|prefill|unspecified, got " + f.get("call-class", null));
        };
        String[] callers = f.get("caller", "run").split(",");
        for (String m : callers) if (!List.of("run", "pool", "async").contains(m.trim())) throw new IllegalArgumentException("--caller run|pool|async, got " + m);
        String[] wires = f.get("wire", "f32").split(",");
        String backend = f.get("backend", "reference");
        int shards = f.getInt("shards", 2), calls = f.getInt("calls", 2000);
        // --tokens N: the first version's name for one row count
        int[] rowCounts = Arrays.stream(f.get("rows", f.get("tokens", "1,8,64")).split(",")).mapToInt(s -> Integer.parseInt(s.trim())).toArray();
        boolean processes = Boolean.parseBoolean(f.get("shard-processes", "true"));
        Path dir;
        String modelName;
        if (f.get("model", null) != null) {
            dir = Path.of(f.get("model", null));
            modelName = dir.toString();
        } else {
            String shape = f.get("shape", "tiny");
            DType dtype = DType.valueOf(f.get("dtype", "f32").toUpperCase(Locale.ROOT));
            dir = Files.createTempDirectory("lightmesh-expert-bench");
            SyntheticCheckpoint.write(dir, shape(shape, f.getInt("layers", 2)), dtype, 1, false);
            modelName = "synthetic " + shape + " " + dtype;
        }
        List<Process> children = new ArrayList<>();
        List<Server> servers = new ArrayList<>();
        try (MeshModel model = MeshModel.load(dir, Backends.create(backend), false)) {
            var c = model.config();
            List<String> addresses = new ArrayList<>();
            for (int s = 0; s < shards; s++) {
                if (processes) {
                    Process p = startShard(dir, backend, s, shards);
                    children.add(p);
                    CHILDREN.add(p);
                    addresses.add("127.0.0.1:" + awaitPort(p));
                } else {
                    int port = KraftBroker.freePort();
                    String address = "127.0.0.1:" + port;
                    ExpertShard shard = new ExpertShard(new ExpertPlacement.Shard("expert-" + s, address, new int[0],
                            ExpertPlacement.expertsOf(s, shards, c.numExperts())), model);
                    servers.add(shard.serve("127.0.0.1", port));
                    addresses.add(address);
                }
            }
            for (int s = 0; s < shards; s++) warmUp(addresses.get(s), model, ExpertPlacement.expertsOf(s, shards, c.numExperts()));
            ExpertPlacement placement = ExpertPlacement.roundRobin(c.numLayers(), c.numExperts(), addresses);
            LocalExperts local = new LocalExperts(c, model.model().weights(), model.model().ops());
            System.out.printf(Locale.ROOT, "expert call: model %s (hidden %d, %d experts of %d, top-%d), %s backend, %d shard(s) %s, %d calls per row count%n",
                    modelName, c.hiddenSize(), c.numExperts(), c.intermediateSize(), c.topK(), model.model().ops().name(), shards,
                    processes ? "in processes of their own" : "in this JVM", calls);
            System.out.println("  batches classed " + callClass + "; shards: priority gate " + Boolean.getBoolean("lightmesh.shard.priority")
                    + ", decode on the transport thread " + Boolean.getBoolean("lightmesh.shard.inlineDecode") + " (-Dlightmesh.shard.priority, -Dlightmesh.shard.inlineDecode)");
            System.out.println("  all figures: mean us per call (one layer); wire+hand-offs = round trip - every other part");
            for (String wire : wires) {
                ActivationDType dtype = wire.trim().equalsIgnoreCase("bf16") ? ActivationDType.ACTIVATION_DTYPE_BF16 : ActivationDType.ACTIVATION_DTYPE_F32;
                for (String caller : callers) {
                    System.out.println("wire " + wire.trim() + ", caller " + caller.trim() + ":");
                    System.out.println("  rows | round trip p50 p90 | pack send(ser.) | shard parse compute ser. | parse unpack | wire+hand-offs | in-process | remote/in-process | bytes out/in | outputs");
                    RemoteExperts.Settings settings = new RemoteExperts.Settings(30_000, 10_000, 5_000, "bench").withWire(dtype).withCallClass(callClass)
                            .withChunkRows(Integer.getInteger("lightmesh.expert.prefillChunkRows", 0));
                    try (RemoteExperts remote = new RemoteExperts(io.lightmesh.mesh.PlacementSource.fixed(placement), c.hiddenSize(), settings, true)) {
                        Call call = caller(caller.trim(), remote);
                        for (int rows : rowCounts) measure(remote, call, local, model, placement, rows, calls, dtype);
                    }
                }
            }
        } finally {
            for (Process p : children) stop(p);
            servers.forEach(Grpc::shutdown);
            if (f.get("model", null) == null) deleteTree(dir); // the synthetic checkpoint (hundreds of MB at h2048)
        }
    }

    private static void deleteTree(Path dir) throws IOException {
        try (var paths = Files.walk(dir)) {
            for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        }
    }

    /** The 2048-hidden shape of the H200 runs (8 experts of 1024, top-2), with few layers: a call is per layer. */
    static SyntheticCheckpoint.Shape shape(String name, int layers) {
        if (name.equals("h2048")) return new SyntheticCheckpoint.Shape(4096, 2048, layers, 16, 4, 128, 64, 8, 2, 1024, 256);
        return BenchServe.shape(name);
    }

    /** One layer's expert call as a caller makes it. */
    interface Call {
        void run(int layer, float[] x, int n, int k, int[] experts, float[] w, float[] out);
    }

    private static final java.util.concurrent.ExecutorService CALL_THREADS = java.util.concurrent.Executors.newThreadPerTaskExecutor(
            Thread.ofVirtual().name("bench-expert-call-", 0).factory());

    /** run: on this thread; pool and async: runAsync (its pool-thread form, or sent from here), awaited (bounded). */
    private static Call caller(String mode, RemoteExperts remote) {
        if (mode.equals("run")) return remote::run;
        boolean async = mode.equals("async");
        return (layer, x, n, k, experts, w, out) -> {
            System.setProperty("lightmesh.expert.asyncCalls", Boolean.toString(async));
            try {
                remote.runAsync(layer, x, n, k, experts, w, out, CALL_THREADS).get(60, TimeUnit.SECONDS);
            } catch (Exception e) {
                throw new IllegalStateException("expert call failed: " + e, e);
            }
        };
    }

    private static void measure(RemoteExperts remote, Call call, LocalExperts local, MeshModel model, ExpertPlacement placement, int rows, int calls,
                                ActivationDType dtype) {
        var c = model.config();
        int h = c.hiddenSize(), k = c.topK(), E = c.numExperts(), L = c.numLayers();
        SplittableRandom rnd = new SplittableRandom(3 + rows);
        // a pool of routings: each token top-k distinct experts with renormalised weights
        int pool = 16;
        float[][] xs = new float[pool][rows * h], ws = new float[pool][rows * k];
        int[][] es = new int[pool][rows * k];
        for (int q = 0; q < pool; q++) {
            for (int i = 0; i < rows * h; i++) xs[q][i] = (float) rnd.nextGaussian();
            for (int t = 0; t < rows; t++) {
                int[] perm = rnd.ints(0, E).distinct().limit(k).toArray();
                float sum = 0;
                for (int j = 0; j < k; j++) { es[q][t * k + j] = perm[j]; ws[q][t * k + j] = (float) rnd.nextDouble(0.1, 1); sum += ws[q][t * k + j]; }
                for (int j = 0; j < k; j++) ws[q][t * k + j] /= sum;
            }
        }
        float[] out = new float[rows * h], ref = new float[rows * h];
        // warm-up (a quarter), checking every output against the in-process experts
        int mismatched = 0, checked = 0;
        double worst = 0;
        for (int i = 0; i < Math.max(50, calls / 4); i++) {
            int q = i % pool, layer = i % L;
            call.run(layer, xs[q], rows, k, es[q], ws[q], out);
            local.run(layer, xs[q], rows, k, es[q], ws[q], ref);
            checked++;
            if (!Arrays.equals(out, ref)) mismatched++;
            worst = Math.max(worst, relativeError(out, ref));
        }
        remote.resetStats();
        double[] rtt = new double[calls];
        java.util.Map<Long, Long> cpu0 = threadCpuNanos();
        long shardCpu0 = childrenCpuNanos();
        for (int i = 0; i < calls; i++) {
            int q = i % pool;
            long t0 = System.nanoTime();
            call.run(i % L, xs[q], rows, k, es[q], ws[q], out);
            rtt[i] = (System.nanoTime() - t0) / 1e3;
        }
        double callerCpu = cpuSince(cpu0) / 1e3 / calls, shardCpu = (childrenCpuNanos() - shardCpu0) / 1e3 / calls;
        RemoteExperts.Breakdown b = remote.breakdown();
        // the in-process experts, same calls
        int localCalls = Math.max(20, calls / 4);
        for (int i = 0; i < localCalls / 4; i++) local.run(i % L, xs[i % pool], rows, k, es[i % pool], ws[i % pool], ref);
        var me = java.lang.management.ManagementFactory.getThreadMXBean();
        long l0 = System.nanoTime(), lc0 = me.getCurrentThreadCpuTime();
        for (int i = 0; i < localCalls; i++) local.run(i % L, xs[i % pool], rows, k, es[i % pool], ws[i % pool], ref);
        double inProcess = (System.nanoTime() - l0) / 1e3 / localCalls, inProcessCpu = (me.getCurrentThreadCpuTime() - lc0) / 1e3 / localCalls;
        // the shards' side of the transport, timed here on a batch and an answer of shard 0's size
        Sizes z = shardSideCosts(placement, rows, h, k, es[0], ws[0], xs[0], dtype);
        double[] sorted = rtt.clone();
        Arrays.sort(sorted);
        double mean = Arrays.stream(rtt).average().orElse(0);
        double rest = mean - b.packUs() - b.sendUs() - z.parseUs - b.computeUs() - z.serializeUs - b.parseUs() - b.unpackUs();
        System.out.printf(Locale.ROOT, "  %4d | %6.0f %5.0f %5.0f | %5.1f %6.1f | %6.1f %7.1f %6.1f | %5.1f %6.1f | %6.0f | %7.0f | %5.2fx | %d/%d | %s%n",
                rows, mean, BenchServe.pct(sorted, 50), BenchServe.pct(sorted, 90), b.packUs(), b.sendUs(), z.parseUs, b.computeUs(),
                z.serializeUs, b.parseUs(), b.unpackUs(), rest, inProcess, mean / inProcess, z.batchBytes, z.resultBytes,
                mismatched == 0 ? "identical to in-process (" + checked + " calls)"
                        : dtype == ActivationDType.ACTIVATION_DTYPE_BF16 ? "bf16: worst relative error " + String.format(Locale.ROOT, "%.2e", worst) + " (" + checked + " calls)"
                        : mismatched + "/" + checked + " calls differ, worst relative error " + String.format(Locale.ROOT, "%.2e", worst));
        // CPU time is what the call's work costs whatever else runs on the machine (wall time on a loaded box is mostly
        // waiting for a core): the threads of every process, JIT compilers and GC excluded (workCpuNanos)
        System.out.printf(Locale.ROOT, "       cpu us per call (JIT and GC threads excluded): caller %.0f + shards %.0f = %.0f; in-process experts %.0f (%.2fx)%n",
                callerCpu, shardCpu, callerCpu + shardCpu, inProcessCpu, (callerCpu + shardCpu) / inProcessCpu);
    }

    /**
     * CPU time of each of this process's Java threads by id (nanoseconds; the JIT compilers and GC are not among them):
     * the calling thread, the transport's event loops, the carriers of virtual threads and, with --shard-processes
     * false, the shards.
     */
    private static java.util.Map<Long, Long> threadCpuNanos() {
        java.lang.management.ThreadMXBean t = java.lang.management.ManagementFactory.getThreadMXBean();
        java.util.Map<Long, Long> m = new java.util.HashMap<>();
        for (long id : t.getAllThreadIds()) m.put(id, Math.max(0, t.getThreadCpuTime(id)));
        return m;
    }

    /**
     * CPU time since {@code before} of the threads alive now (a thread new since then counts whole). A thread that
     * ended meanwhile (an idle virtual-thread carrier) is not counted at all: an undercount, never a negative sum.
     */
    private static long cpuSince(java.util.Map<Long, Long> before) {
        long sum = 0;
        for (var e : threadCpuNanos().entrySet()) sum += Math.max(0, e.getValue() - before.getOrDefault(e.getKey(), 0L));
        return sum;
    }

    /** The same for the shard processes (none when they run in this JVM: then {@link #threadCpuNanos} has it). */
    private static long childrenCpuNanos() {
        return CHILDREN.stream().mapToLong(p -> workCpuNanos(p.pid())).sum();
    }

    /**
     * CPU time of a process's threads from /proc (clock ticks, 10 ms: meaningful over many calls), without the JVM's
     * JIT compilers and garbage collectors: on a loaded machine a JVM compiles for minutes, and that is not the cost of
     * a call in steady state. 0 where /proc cannot be read.
     */
    static long workCpuNanos(long pid) {
        long ticks = 0;
        java.io.File[] tasks = new java.io.File("/proc/" + pid + "/task").listFiles();
        if (tasks == null) return 0;
        for (java.io.File t : tasks) {
            try {
                String comm = Files.readString(t.toPath().resolve("comm")).trim();
                if (comm.startsWith("C1 Compiler") || comm.startsWith("C2 Compiler") || comm.startsWith("GC Thread") || comm.startsWith("G1 ")
                        || comm.startsWith("VM ")) continue;
                String stat = Files.readString(t.toPath().resolve("stat"));
                String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                ticks += Long.parseLong(f[11]) + Long.parseLong(f[12]); // utime, stime (fields 14 and 15 of stat)
            } catch (IOException | RuntimeException gone) {
                // a thread that ended between the listing and the read
            }
        }
        return ticks * 10_000_000L; // USER_HZ is 100 on Linux
    }

    private static final List<Process> CHILDREN = new java.util.concurrent.CopyOnWriteArrayList<>();

    /**
     * A shard's first batches, unary and on a channel without keepalive, until one of 64 rows answers within a second
     * (at most two minutes): a cold JVM on a loaded machine can take longer than the mesh channels' keepalive (15 s)
     * over its first products, which computes on the transport thread and so answers no ping meanwhile.
     */
    private static void warmUp(String address, MeshModel model, int[] experts) throws InterruptedException {
        var c = model.config();
        int h = c.hiddenSize(), k = c.topK(), n = 64;
        float[] x = new float[n * h];
        SplittableRandom rnd = new SplittableRandom(1);
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
        io.grpc.ManagedChannel ch = io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder.forTarget(address).usePlaintext()
                .maxInboundMessageSize(Grpc.MAX_MESSAGE_BYTES).build();
        try {
            var stub = ExpertGrpc.newBlockingStub(ch);
            long until = System.nanoTime() + 120_000_000_000L;
            for (int round = 0; System.nanoTime() < until; round++) {
                long t0 = System.nanoTime();
                for (int layer = 0; layer < c.numLayers(); layer++) {
                    ExpertBatch.Builder b = ExpertBatch.newBuilder().setCallId(round).setLayer(layer).setNumTokens(n).setTopK(k)
                            .setDtype(ActivationDType.ACTIVATION_DTYPE_F32).setHidden(WireRows.encode(x, n * h, ActivationDType.ACTIVATION_DTYPE_F32));
                    for (int i = 0; i < n * k; i++) b.addExperts(i % k == 0 ? experts[(i / k) % experts.length] : -1).addWeights(1f);
                    stub.withDeadlineAfter(60, TimeUnit.SECONDS).compute(b.build());
                }
                if (round >= 2 && System.nanoTime() - t0 < 1_000_000_000L * c.numLayers()) return;
            }
        } finally {
            ch.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    static double relativeError(float[] got, float[] want) {
        double err = 0, ref = 0;
        for (int i = 0; i < want.length; i++) { err += (double) (got[i] - want[i]) * (got[i] - want[i]); ref += (double) want[i] * want[i]; }
        return Math.sqrt(err / Math.max(ref, 1e-30));
    }

    record Sizes(double parseUs, double serializeUs, int batchBytes, int resultBytes) {}

    /**
     * Shard 0's parse of a batch and serialization of its answer, through the generated marshallers and a stream of
     * the kind the transport hands them (known length, over one buffer), timed over many repetitions.
     */
    private static Sizes shardSideCosts(ExpertPlacement placement, int rows, int h, int k, int[] experts, float[] weights, float[] x, ActivationDType dtype) {
        ExpertBatch.Builder b = ExpertBatch.newBuilder().setCallId(1).setLayer(0).setNumTokens(rows).setTopK(k)
                .setDtype(dtype).setHidden(WireRows.encode(x, rows * h, dtype));
        for (int i = 0; i < rows * k; i++) {
            b.addExperts(placement.shards().get(0).holds(0, experts[i]) ? experts[i] : -1);
            b.addWeights(weights[i]);
        }
        ExpertBatch batch = b.build();
        ExpertResult result = ExpertResult.newBuilder().setCallId(1).setLayer(0).setNumTokens(rows).setDtype(dtype)
                .setCombined(WireRows.encode(x, rows * h, dtype)).setComputeUs(100).build();
        MethodDescriptor<ExpertBatch, ExpertResult> m = ExpertGrpc.getComputeStreamMethod();
        byte[] wire = batch.toByteArray();
        int reps = Math.max(200, 2_000_000 / Math.max(1, wire.length));
        long sink = 0;
        for (int i = 0; i < reps / 4; i++) sink += parse(m.getRequestMarshaller(), wire).getNumTokens() + drain(m.getResponseMarshaller().stream(result));
        long t0 = System.nanoTime();
        for (int i = 0; i < reps; i++) sink += parse(m.getRequestMarshaller(), wire).getNumTokens();
        long t1 = System.nanoTime();
        for (int i = 0; i < reps; i++) sink += drain(m.getResponseMarshaller().stream(result));
        long t2 = System.nanoTime();
        if (sink == 42) System.out.print("");
        return new Sizes((t1 - t0) / 1e3 / reps, (t2 - t1) / 1e3 / reps, wire.length, result.getSerializedSize());
    }

    private static <T> T parse(MethodDescriptor.Marshaller<T> m, byte[] wire) {
        return m.parse(io.grpc.internal.ReadableBuffers.openStream(io.grpc.internal.ReadableBuffers.wrap(wire), true));
    }

    /** Serializes as the transport's framer does: the marshaller's stream drained into a buffer. */
    private static long drain(InputStream in) {
        try {
            var sink = new java.io.ByteArrayOutputStream(64 << 10);
            long n = ((io.grpc.Drainable) in).drainTo(sink);
            return n;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    // ---- the shards' processes ----

    private static Process startShard(Path model, String backend, int index, int count) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx2g"));
        // this JVM's lightmesh.* properties (the shard's forms: lightmesh.shard.priority, ...) for the shard too
        for (String k : System.getProperties().stringPropertyNames()) if (k.startsWith("lightmesh.")) cmd.add("-D" + k + "=" + System.getProperty(k));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), ExpertCallBench.class.getName(),
                "--serve-shard", index + "/" + count, model.toString(), backend));
        return new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    }

    /** The port a shard process prints once it serves ("port N"), within a minute. */
    private static int awaitPort(Process p) throws Exception {
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        var line = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try { return r.readLine(); } catch (IOException e) { return null; }
        });
        String l = line.get(60, TimeUnit.SECONDS);
        if (l == null || !l.startsWith("port ")) throw new IllegalStateException("expert shard process did not start (said " + l + ")");
        return Integer.parseInt(l.substring(5).trim());
    }

    /** Closing its stdin ends a shard process; forcibly after 5 s. */
    private static void stop(Process p) {
        try {
            p.getOutputStream().close();
            if (!p.waitFor(5, TimeUnit.SECONDS)) p.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        } catch (IOException | InterruptedException e) {
            p.destroyForcibly();
        }
    }

    /** A shard process: --serve-shard I/N DIR BACKEND; serves on a free loopback port until its stdin closes. */
    private static void serveShard(String[] args) throws Exception {
        String[] in = args[1].split("/");
        int index = Integer.parseInt(in[0]), count = Integer.parseInt(in[1]);
        try (MeshModel model = MeshModel.load(Path.of(args[2]), Backends.create(args[3]), false)) {
            int port = KraftBroker.freePort();
            String address = "127.0.0.1:" + port;
            ExpertShard shard = new ExpertShard(new ExpertPlacement.Shard("expert-" + index, address, new int[0],
                    ExpertPlacement.expertsOf(index, count, model.config().numExperts())), model);
            Server server = shard.serve("127.0.0.1", port);
            System.out.println("port " + port);
            System.out.flush();
            try {
                while (System.in.read() >= 0) { } // until the bench closes our stdin (or dies)
            } finally {
                Grpc.shutdown(server);
                shard.close();
            }
        }
    }
}
