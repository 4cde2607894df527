package io.lightmesh.engine.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.backend.VectorOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.config.ModelConfig;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tensor.DType;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The engine benchmark ({@code ./lightmesh bench}): prefill throughput per prompt length (and time per token, to
 * show it is linear), decode throughput at batch 1 and batch B, against the machine's measured streaming bandwidth
 * and the weight bytes a decoded token has to read. Runs on a seeded synthetic checkpoint in the real format (M1
 * dialect, so lightning block 256; bf16 by default), written once into a cache folder keyed by shape.
 *
 * <p>Progress goes to {@code err} (stderr); the report (text, or one JSON object with {@code --json}) to {@code out}.
 */
public final class EngineBench {
    private final EngineBenchOptions o;
    private final PrintStream out;
    private final PrintStream log;

    private EngineBench(EngineBenchOptions o, PrintStream out, PrintStream log) {
        this.o = o;
        this.out = out;
        this.log = log;
    }

    public static void main(String[] args) { System.exit(run("EngineBench", args, System.out, System.err)); }

    /** {@code ./lightmesh bench}: {@link #run(String, String[], PrintStream, PrintStream)} under that name. */
    public static int run(String[] args, PrintStream out) { return run("lightmesh bench", args, out, System.err); }

    /**
     * Parses the command line ({@link EngineBenchOptions}) and runs the bench; returns 0 (after --help too), 2 for a
     * wrong command line (why, and the nearest option on a typo, on {@code err}), 1 for any other failure.
     */
    public static int run(String name, String[] args, PrintStream out, PrintStream err) {
        EngineBenchOptions o = new EngineBenchOptions();
        Integer parsed = BenchCommandLine.parse(name, o, args, out, err);
        if (parsed != null) return parsed;
        try {
            new EngineBench(o, out, err).execute();
            return 0;
        } catch (Exception | OutOfMemoryError e) {
            err.println(name + ": " + e);
            return 1;
        }
    }

    // -------------------------------------------------------------------------------------------------- the runs

    /**
     * One prefill of {@code tokens} tokens; when the time limit stopped it early, {@code done} tokens went through
     * and {@code extrapolated} is the fitted estimate for the whole prompt (else equal to seconds).
     */
    record PrefillResult(int tokens, int done, double seconds, double matmul, double lightning, double softmax,
                         double extrapolated) {
        boolean complete() { return done == tokens; }
        double tokensPerSecond() { return done / seconds; }
        double microsPerToken() { return seconds * 1e6 / done; }
    }

    /** A decode run; {@code bestSegment} is the fastest stretch of {@link #SEGMENT} steps in tokens/s. */
    record DecodeResult(int batch, int steps, double seconds, double matmul, double lightning, double softmax,
                        double bestSegment) {
        double tokensPerSecond() { return (double) batch * steps / seconds; }
    }

    /** Decode steps timed together; the bandwidth is sampled between such stretches. */
    static final int SEGMENT = 32;

    private void execute() throws Exception {
        SyntheticCheckpoint.Shape shape = o.shape();
        Path dir = checkpoint(shape);
        TensorOps backend = switch (o.backend) {
            case "reference" -> new ReferenceOps();
            case "vector" -> new VectorOps(o.threads);
            default -> io.lightmesh.engine.backend.Backends.create(o.backend); // opencl, auto
        };
        TimedOps ops = new TimedOps(backend);
        List<PrefillResult> prefills = new ArrayList<>();
        List<DecodeResult> decodes = new ArrayList<>();
        ModelConfig c;
        long peakRss, peakHeap;
        MemoryBandwidth bandwidth = null;
        try (MiniMaxModel model = MiniMaxModel.load(dir, ops)) {
            c = model.config();
            log.printf("bench: %s, backend %s, prefill %s, decode %s; warming up%n", describe(c), backend.name(),
                    model.prefillsOnDevice() ? "device-resident" : "through host arrays",
                    model.decodesOnDevice() ? "device-resident" : "through host arrays");
            prefillOnDevice = model.prefillsOnDevice();
            decodeOnDevice = model.decodesOnDevice();
            warmUp(model);
            for (int len : o.promptLengths) prefills.add(prefill(model, ops, len));
            // the model's own peak, before the bandwidth buffer is allocated (decode adds little to it)
            peakRss = peakRssBytes();
            peakHeap = peakHeapBytes();
            if (o.bandwidthMib > 0) {
                log.printf("bench: allocating %d MiB for the bandwidth measurement%n", o.bandwidthMib);
                bandwidth = new MemoryBandwidth((long) o.bandwidthMib << 20, o.threads);
            }
            if (o.decodeTokens > 0) {
                decodes.add(decode(model, ops, 1, bandwidth));
                if (o.batch > 1) decodes.add(decode(model, ops, o.batch, null));
            }
            if (bandwidth != null) for (int i = 0; i < 5; i++) bandwidth.sample();
        } finally {
            ops.close();
            if (bandwidth != null) bandwidth.close();
        }
        double bw = bandwidth == null ? 0 : bandwidth.best();
        long bytesPerToken = c.activeParameterCount() * o.dtype.bytes();
        report(c, shape, dir, backend, prefills, decodes, bw, bytesPerToken, peakRss, peakHeap);
    }

    private void warmUp(MiniMaxModel model) {
        SplittableRandom rnd = new SplittableRandom(o.seed);
        int n = Math.min(2048, o.promptLengths.isEmpty() ? 2048 : o.promptLengths.get(0));
        for (int i = 0; i < 2; i++) model.prefill(model.newState(), tokens(rnd, model.config(), n));
        SequenceState s = model.newState();
        model.prefill(s, tokens(rnd, model.config(), 16));
        for (int i = 0; i < 16; i++) model.decode(List.of(s), new int[]{i});
    }

    private PrefillResult prefill(MiniMaxModel model, TimedOps ops, int len) {
        int runs = len <= 8192 ? o.repeat : 1;
        int[] prompt = tokens(new SplittableRandom(o.seed + len), model.config(), len);
        PrefillResult best = null;
        model.kernelTimes(); // drops what came before (the warm-up, an earlier length)
        double secs = 0;
        for (int r = 0; r < runs; r++) {
            System.gc();
            long syncs0 = model.hostSyncs();
            PrefillResult res = prefillOnce(model, ops, prompt);
            long syncs = syncs0 < 0 ? -1 : model.hostSyncs() - syncs0;
            secs += res.seconds;
            log.printf(Locale.ROOT, "bench: prefill %d tokens: %.3f s (%.0f tokens/s)%s%s%n", res.done, res.seconds,
                    res.tokensPerSecond(), syncs < 0 ? "" : String.format(Locale.ROOT, "; %d host syncs (%s)", syncs,
                            model.lastPrefillRouted() ? "device route" : "host route"),
                    res.complete() ? "" : String.format(Locale.ROOT,
                            "; stopped by --time-limit-s, %d tokens would take about %.0f s", len, res.extrapolated));
            if (best == null || res.seconds < best.seconds) best = res;
        }
        printKernelTimes(model.kernelTimes(), "prefill " + len + " tokens", "prefill", runs, secs);
        return best;
    }

    /**
     * Feeds the prompt in the model's own chunks (whole lightning blocks, so the result equals a one-shot prefill),
     * timing each: chunk time grows linearly with position (the softmax layers' O(n) per token), so a + b * position
     * fitted over the chunks extrapolates a run stopped by the time limit.
     */
    private PrefillResult prefillOnce(MiniMaxModel model, TimedOps ops, int[] prompt) {
        int block = model.config().blockSize(), chunk = Math.max(1, 2048 / block) * block, len = prompt.length;
        SequenceState s = model.newState();
        ops.reset();
        List<double[]> chunks = new ArrayList<>(); // {position, seconds}
        long t0 = System.nanoTime(), lastLog = t0;
        int done = 0;
        while (done < len) {
            int n = Math.min(chunk, len - done);
            int[] part = java.util.Arrays.copyOfRange(prompt, done, done + n);
            long c0 = System.nanoTime();
            // logits only for the prompt's last token, as a one-shot prefill computes them
            model.prefill(s, part, done + n == len ? new int[]{n - 1} : new int[0]);
            long now = System.nanoTime();
            chunks.add(new double[]{done, (now - c0) / 1e9});
            done += n;
            if (now - lastLog > 60e9 && done < len) {
                lastLog = now;
                log.printf(Locale.ROOT, "bench:   %d of %d tokens after %.0f s (last chunk %.0f tokens/s)%n", done, len,
                        (now - t0) / 1e9, n / ((now - c0) / 1e9));
            }
            if (o.timeLimitSeconds > 0 && (now - t0) / 1e9 > o.timeLimitSeconds) break;
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        double extrapolated = secs;
        if (done < len) {
            double[] ab = fitLine(chunks.subList(Math.min(1, chunks.size() - 1), chunks.size()));
            extrapolated = secs;
            for (long p = done; p < len; p += chunk) extrapolated += (ab[0] + ab[1] * p) * Math.min(chunk, len - p) / chunk;
        }
        return new PrefillResult(len, done, secs, ops.nanos(TimedOps.Op.MATMUL) / 1e9,
                ops.nanos(TimedOps.Op.LIGHTNING) / 1e9, ops.nanos(TimedOps.Op.SOFTMAX) / 1e9, extrapolated);
    }

    /** Least-squares seconds = a + b * position over {position, seconds} points (b = 0 from a single point). */
    static double[] fitLine(List<double[]> pts) {
        int n = pts.size();
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (double[] p : pts) { sx += p[0]; sy += p[1]; sxx += p[0] * p[0]; sxy += p[0] * p[1]; }
        double den = n * sxx - sx * sx;
        if (n < 2 || den == 0) return new double[]{sy / n, 0};
        double b = (n * sxy - sx * sy) / den;
        return new double[]{(sy - b * sx) / n, b};
    }

    /**
     * Greedy decode of {@code batch} sequences for --decode-tokens steps after a --decode-context prompt, timed in
     * stretches of {@link #SEGMENT} steps; at batch 1 the bandwidth probe (if any) takes one sample after each.
     */
    private DecodeResult decode(MiniMaxModel model, TimedOps ops, int batch, MemoryBandwidth probe)
            throws InterruptedException {
        SplittableRandom rnd = new SplittableRandom(o.seed + 1000 + batch);
        List<SequenceState> states = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
            SequenceState s = model.newState();
            model.prefill(s, tokens(rnd, model.config(), o.decodeContext));
            states.add(s);
        }
        int[] next = new int[batch];
        for (int b = 0; b < batch; b++) next[b] = rnd.nextInt(model.config().vocabSize());
        for (int i = 0; i < 8; i++) next = next(model, states, next); // warm this batch size
        System.gc();
        ops.reset();
        model.kernelTimes(); // drops what the prefill and the warm-up steps added
        double secs = 0, bestSegment = 0;
        for (int done = 0; done < o.decodeTokens; ) {
            int steps = Math.min(SEGMENT, o.decodeTokens - done);
            long t0 = System.nanoTime();
            for (int i = 0; i < steps; i++) next = next(model, states, next);
            double t = (System.nanoTime() - t0) / 1e9;
            secs += t;
            done += steps;
            if (steps == SEGMENT || done == steps) bestSegment = Math.max(bestSegment, batch * steps / t);
            if (probe != null) probe.sample();
        }
        DecodeResult res = new DecodeResult(batch, o.decodeTokens, secs, ops.nanos(TimedOps.Op.MATMUL) / 1e9,
                ops.nanos(TimedOps.Op.LIGHTNING) / 1e9, ops.nanos(TimedOps.Op.SOFTMAX) / 1e9, bestSegment);
        log.printf(Locale.ROOT, "bench: decode batch %d: %d steps in %.3f s (%.1f tokens/s, best %d-step stretch %.1f)%s%n",
                batch, o.decodeTokens, secs, res.tokensPerSecond(), SEGMENT, bestSegment, launches(model)
                        + (!model.decodesOnDevice() ? "" : o.decodeLogits
                        ? "; logits read back, argmax on the host" : "; argmax on the device, ids read back"));
        printKernelTimes(model.kernelTimes(), "decode batch " + batch, "step", o.decodeTokens, secs);
        return res;
    }

    /**
     * The device's per-kernel table of the timed steps (with -Dlightmesh.opencl.profile=events|true), and a step's
     * wall time beside the sum of its kernels' device time: the difference is host work and launch gaps.
     */
    private void printKernelTimes(io.lightmesh.engine.backend.DeviceOps.KernelTimes t, String what, String unit, int steps,
                                  double secs) {
        if (t == null || t.launches() == 0) return;
        log.printf(Locale.ROOT, "bench: %s kernel profile, %d %ss: a %s %.1f us wall, %.1f us of kernels (%.1f%%), "
                        + "%.1f launches%s%n", what, steps, unit, unit, secs * 1e6 / steps, t.kernelNanos() / 1e3 / steps,
                100.0 * t.kernelNanos() / 1e9 / Math.max(1e-12, secs), (double) t.launches() / steps,
                t.spanNanos() < 0 ? "" : String.format(Locale.ROOT, ", first kernel start to last end %.1f us",
                        t.spanNanos() / 1e3 / steps));
        log.print(t.table());
    }

    /** "; N kernel launches a step (fused|per-operation, decode kernels SET)" for a device decode, else "". */
    private static String launches(MiniMaxModel model) {
        long n = model.lastDecodeLaunches();
        String set = model.decodeKernelSet();
        return n < 0 ? "" : "; " + n + " kernel launches a step (" + (model.lastDecodeFused() ? "fused" : "per-operation")
                + (set == null ? "" : ", decode kernels " + set) + ")";
    }

    /**
     * One greedy decode step: the device's argmax of every row (what a greedy batch of the product reads back), or with
     * --decode-logits every row's logits read back and scanned here (what a sampled batch reads).
     */
    private int[] next(MiniMaxModel model, List<SequenceState> states, int[] tokens) {
        boolean[] wanted = new boolean[tokens.length];
        java.util.Arrays.fill(wanted, o.decodeLogits);
        io.lightmesh.engine.model.DecodeResult r = model.decode(states, tokens, wanted);
        return o.decodeLogits ? greedy(r.logits()) : r.argmax();
    }

    private static int[] greedy(float[][] logits) {
        int[] next = new int[logits.length];
        for (int b = 0; b < logits.length; b++) {
            int best = 0;
            for (int i = 1; i < logits[b].length; i++) if (logits[b][i] > logits[b][best]) best = i;
            next[b] = best;
        }
        return next;
    }

    private static int[] tokens(SplittableRandom rnd, ModelConfig c, int n) {
        return rnd.ints(n, 0, c.vocabSize()).toArray();
    }

    // -------------------------------------------------------------------------------------------- the checkpoint

    /** The cached checkpoint for this shape and dtype, written first if absent (via a temp folder, then a rename). */
    private Path checkpoint(SyntheticCheckpoint.Shape s) throws IOException {
        String key = String.format(Locale.ROOT, "m1-%s-v%d-h%d-l%d-H%dx%d-kv%d-r%d-e%dk%d-i%d-seed%d",
                o.dtype.name().toLowerCase(Locale.ROOT), s.vocab(), s.hidden(), s.layers(), s.heads(), s.headDim(),
                s.kvHeads(), s.rotaryDim(), s.experts(), s.topK(), s.intermediate(), o.seed);
        Path dir = o.cacheDir.resolve(key);
        if (Files.exists(dir.resolve("config.json")) && Files.exists(dir.resolve("model.safetensors"))) {
            log.println("bench: reusing checkpoint " + dir);
            return dir;
        }
        Path tmp = o.cacheDir.resolve(key + ".tmp-" + ProcessHandle.current().pid());
        log.printf(Locale.ROOT, "bench: writing a %.1fM-parameter %s checkpoint to %s%n", s.parameters() / 1e6, o.dtype, dir);
        SyntheticCheckpoint.write(tmp, s, o.dtype, o.seed, true);
        try {
            Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            if (!Files.exists(dir.resolve("model.safetensors"))) throw e; // else another run won the race
        }
        return dir;
    }

    // ---------------------------------------------------------------------------------------------------- memory

    /** VmHWM from /proc/self/status (includes the mapped checkpoint pages touched); -1 where unavailable. */
    static long peakRssBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
            }
        } catch (IOException | RuntimeException e) {
            // not Linux
        }
        return -1;
    }

    /** Sum of the heap pools' peak usage: an upper bound on the peak heap in use. */
    static long peakHeapBytes() {
        long sum = 0;
        for (MemoryPoolMXBean p : ManagementFactory.getMemoryPoolMXBeans()) {
            if (p.getType() == MemoryType.HEAP && p.getPeakUsage() != null) sum += p.getPeakUsage().getUsed();
        }
        return sum;
    }

    // ---------------------------------------------------------------------------------------------------- report

    private static String describe(ModelConfig c) {
        return String.format(Locale.ROOT,
                "vocab %d, hidden %d, %d layers (%d lightning, %d softmax), heads %d x %d, kv %d, %d experts top-%d, "
                        + "intermediate %d, block %d",
                c.vocabSize(), c.hiddenSize(), c.numLayers(), c.numLightningLayers(), c.numSoftmaxLayers(),
                c.numHeads(), c.headDim(), c.numKvHeads(), c.numExperts(), c.topK(), c.intermediateSize(), c.blockSize());
    }

    /** Active parameters by part: attention, router, top-k experts, LM head (norms omitted: a few thousand). */
    private static long[] activeParts(ModelConfig c) {
        long h = c.hiddenSize(), a = c.attnDim(), kv = c.kvDim(), attn = 0, router = 0, experts = 0;
        for (int l = 0; l < c.numLayers(); l++) {
            attn += c.isSoftmax(l) ? 2 * h * a + 2 * h * kv : 5 * h * a;
            router += (long) c.numExperts() * h;
            experts += (long) c.topK() * 3 * h * c.intermediateSize();
        }
        return new long[]{attn, router, experts, (long) c.vocabSize() * h};
    }

    /** Whether the model ran prefill / decode on the device path, whose time TimedOps cannot split by operation. */
    private boolean prefillOnDevice, decodeOnDevice;

    private void report(ModelConfig c, SyntheticCheckpoint.Shape shape, Path dir, TensorOps backend,
                        List<PrefillResult> prefills, List<DecodeResult> decodes, double bandwidth, long bytesPerToken,
                        long peakRss, long peakHeap) {
        double bound = bandwidth > 0 ? bandwidth / bytesPerToken : 0;
        DecodeResult d1 = decodes.isEmpty() ? null : decodes.get(0);
        long[] parts = activeParts(c);
        String jvm = "JDK " + Runtime.version() + ", " + VectorOps.lanes() + " fp32 lanes";
        int threads = backend instanceof VectorOps v ? v.threads() : 1;
        if (o.json) {
            ObjectMapper json = new ObjectMapper();
            ObjectNode r = json.createObjectNode();
            r.put("backend", backend.name()).put("threads", threads).put("jvm", jvm).put("checkpoint", dir.toString());
            ObjectNode m = r.putObject("model");
            m.put("size", o.size).put("dtype", o.dtype.name()).put("vocab", c.vocabSize()).put("hidden", c.hiddenSize())
                    .put("layers", c.numLayers()).put("softmax_layers", c.numSoftmaxLayers()).put("heads", c.numHeads())
                    .put("head_dim", c.headDim()).put("kv_heads", c.numKvHeads()).put("experts", c.numExperts())
                    .put("top_k", c.topK()).put("intermediate", c.intermediateSize()).put("block_size", c.blockSize())
                    .put("parameters", c.parameterCount()).put("active_parameters", c.activeParameterCount());
            ArrayNode pa = r.putArray("prefill");
            for (PrefillResult p : prefills) {
                pa.addObject().put("tokens", p.tokens).put("tokens_done", p.done).put("complete", p.complete())
                        .put("extrapolated_seconds", p.extrapolated).put("seconds", p.seconds).put("tokens_per_s", p.tokensPerSecond())
                        .put("us_per_token", p.microsPerToken()).put("matmul_s", p.matmul).put("lightning_s", p.lightning)
                        .put("softmax_s", p.softmax);
            }
            ArrayNode da = r.putArray("decode");
            for (DecodeResult d : decodes) {
                da.addObject().put("batch", d.batch).put("steps", d.steps).put("seconds", d.seconds)
                        .put("tokens_per_s", d.tokensPerSecond()).put("best_segment_tokens_per_s", d.bestSegment)
                        .put("matmul_s", d.matmul)
                        .put("lightning_s", d.lightning).put("softmax_s", d.softmax);
            }
            r.put("bandwidth_bytes_per_s", bandwidth).put("weight_bytes_per_token", bytesPerToken)
                    .put("bound_tokens_per_s", bound)
                    .put("batch1_fraction_of_bound", d1 != null && bound > 0 ? d1.tokensPerSecond() / bound : 0)
                    .put("batch1_best_segment_fraction_of_bound", d1 != null && bound > 0 ? d1.bestSegment / bound : 0)
                    .put("peak_rss_bytes", peakRss).put("peak_heap_bytes", peakHeap);
            out.println(r.toPrettyString());
            return;
        }
        out.printf(Locale.ROOT, "LightMesh engine bench: backend %s, %d threads, %s%n", backend.name(), threads, jvm);
        out.printf(Locale.ROOT, "model (%s, %s): %s%n", o.size, o.dtype, describe(c));
        out.printf(Locale.ROOT, "  %.1fM parameters, %.1fM active per token; checkpoint %s%n",
                c.parameterCount() / 1e6, c.activeParameterCount() / 1e6, dir);
        if (!prefills.isEmpty()) {
            out.println();
            out.println("prefill     tokens    seconds   tokens/s   us/token  vs first   matmul lightning softmax   other"
                    + (prefillOnDevice ? "   (device-resident: the split by operation is not measured, all shows as other)" : ""));
            double first = prefills.get(0).microsPerToken();
            for (PrefillResult p : prefills) {
                double other = p.seconds - p.matmul - p.lightning - p.softmax;
                out.printf(Locale.ROOT, "         %9d %10.3f %10.1f %10.1f %8.2fx %7.0f%% %8.0f%% %6.0f%% %6.0f%%%n",
                        p.tokens, p.seconds, p.tokensPerSecond(), p.microsPerToken(), p.microsPerToken() / first,
                        100 * p.matmul / p.seconds, 100 * p.lightning / p.seconds, 100 * p.softmax / p.seconds,
                        100 * other / p.seconds);
                if (!p.complete()) {
                    out.printf(Locale.ROOT, "           stopped by --time-limit-s after %d of %d tokens; the whole prompt "
                            + "extrapolates to %.0f s (%.1f tokens/s)%n", p.done, p.tokens, p.extrapolated, p.tokens / p.extrapolated);
                }
            }
        }
        if (!decodes.isEmpty()) {
            out.println();
            out.println("decode      batch      steps    seconds   tokens/s  ms/step best-32   matmul lightning softmax   other"
                    + (decodeOnDevice ? "   (device-resident: the split by operation is not measured, all shows as other)" : ""));
            for (DecodeResult d : decodes) {
                double other = d.seconds - d.matmul - d.lightning - d.softmax;
                out.printf(Locale.ROOT, "         %9d %10d %10.3f %10.1f %8.2f %8.1f %7.0f%% %8.0f%% %6.0f%% %6.0f%%%n",
                        d.batch, d.steps, d.seconds, d.tokensPerSecond(), d.seconds * 1e3 / d.steps, d.bestSegment,
                        100 * d.matmul / d.seconds, 100 * d.lightning / d.seconds, 100 * d.softmax / d.seconds,
                        100 * other / d.seconds);
            }
        }
        out.println();
        out.printf(Locale.ROOT, "weights read per decoded token: %.1f MB (%s active params: attention %.1fM, router %.2fM, "
                        + "top-%d experts %.1fM, LM head %.1fM)%n", bytesPerToken / 1e6, o.dtype,
                parts[0] / 1e6, parts[1] / 1e6, c.topK(), parts[2] / 1e6, parts[3] / 1e6);
        if (bandwidth > 0) {
            out.printf(Locale.ROOT, "memory bandwidth: %.1f GB/s (streaming read of %d MiB, %d threads; best sample, "
                    + "taken between batch-1 decode stretches and 5 times after)%n", bandwidth / 1e9, o.bandwidthMib, o.threads);
            out.printf(Locale.ROOT, "bandwidth bound: %.1f tokens/s at batch 1", bound);
            if (d1 != null) {
                out.printf(Locale.ROOT, "; achieved %.1f = %.0f%% of the bound (best %d-step stretch %.1f = %.0f%%)",
                        d1.tokensPerSecond(), 100 * d1.tokensPerSecond() / bound, SEGMENT, d1.bestSegment,
                        100 * d1.bestSegment / bound);
            }
            out.println();
        }
        out.printf(Locale.ROOT, "peak RSS %.0f MiB (mapped weights touched included, bandwidth buffer not), "
                + "peak heap %.0f MiB (sum of the heap pools' peaks)%n",
                peakRss / 1048576.0, peakHeap / 1048576.0);
    }
}
