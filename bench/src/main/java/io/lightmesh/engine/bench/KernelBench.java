package io.lightmesh.engine.bench;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.backend.opencl.OpenClOps;
import io.lightmesh.engine.backend.opencl.ResidentOps;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Times the OpenCL kernels at model scale and prints one table: matmul GFLOP/s (4096^3 and MiniMax-M1 projection
 * shapes), matrix-vector GB/s (fp32 and bf16 weights), lightning prefill at 32K tokens x 64 heads x 128, the lightning
 * decode step and split decode attention in GB/s, and flash attention prefill.
 *
 * <p>Two times per case: {@code kernel} is the device time of the kernels alone, from OpenCL profiling events (this
 * main turns Aparapi's profiling on), and {@code call} is the wall time of the whole {@link TensorOps} call, which
 * adds the host-device copies of the activations that the array interface imposes. Rates use the kernel time. Each
 * figure is the median of the timed repetitions after one warm-up call. Weights are uploaded by the warm-up.
 *
 * <pre>
 * java --enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector -Xmx48g \
 *      -cp "lightmesh-bench.jar:lib/*" io.lightmesh.engine.bench.KernelBench [--quick] [--reps N] [--only matmul,matvec,...]
 * </pre>
 * {@code --quick} shrinks every case (a smoke test for PoCL). Sections: matmul, gemm (the tensor-core GEMM forms
 * side by side, -Dlightmesh.opencl.gemm chooses the one the engine uses), matvec, lightning, decode, attention, resident,
 * decode3 (the fused decode step's products, decode kernels v2 against v3 in each of its row forms; only when asked
 * for by name).
 *
 * <p>The resident section times the device-resident decode kernels ({@link ResidentOps}: inputs and outputs already on
 * the device, no copies), plus a device-to-device copy as the bandwidth reference through the same API. Those have no
 * profiling events: each figure is the host time of {@code 4 x reps} back-to-back launches ended by one clFinish,
 * divided by the launch count (median of 5 such batches), so launch gaps are included, which favours nothing.
 */
public final class KernelBench {
    private final OpenClOps ops;
    private final boolean quick;
    private final int reps;
    private final List<String> rows = new ArrayList<>();

    private KernelBench(OpenClOps ops, boolean quick, int reps) {
        this.ops = ops;
        this.quick = quick;
        this.reps = reps;
    }

    public static void main(String[] args) {
        KernelBenchOptions o = new KernelBenchOptions();
        Integer parsed = BenchCommandLine.parse("KernelBench", o, args, System.out, System.err);
        if (parsed != null) System.exit(parsed);
        if (System.getProperty("com.aparapi.enableProfiling") == null) System.setProperty("com.aparapi.enableProfiling", "true");
        try (OpenClOps ops = OpenClOps.create(OpenClOps.Preference.GPU_THEN_CPU)) {
            System.out.println("device: " + ops.device());
            KernelBench b = new KernelBench(ops, o.quick, o.reps);
            if (o.only.contains("matmul")) b.matmul();
            if (o.only.contains("gemm")) b.gemm();
            if (o.only.contains("matvec")) b.matvec();
            if (o.only.contains("lightning")) b.lightningPrefill();
            if (o.only.contains("decode")) b.decode();
            if (o.only.contains("attention")) b.attentionPrefill();
            if (o.only.contains("resident")) b.resident();
            if (o.only.contains("decode3")) b.decodeV3();
            b.print();
        }
    }

    /** Median kernel and call time (ns) of {@code reps} runs of {@code call} after one warm-up. */
    private long[] time(Runnable call, int repetitions) {
        call.run();
        long[] kernel = new long[repetitions], wall = new long[repetitions];
        for (int r = 0; r < repetitions; r++) {
            long k0 = ops.deviceKernelNanos(), t0 = System.nanoTime();
            call.run();
            wall[r] = System.nanoTime() - t0;
            kernel[r] = ops.deviceKernelNanos() - k0;
        }
        Arrays.sort(kernel);
        Arrays.sort(wall);
        return new long[]{kernel[repetitions / 2], wall[repetitions / 2]};
    }

    private void row(String what, long[] t, double rate, String unit) {
        String line = String.format(Locale.ROOT, "| %-58s | %10.3f | %10.3f | %10.1f %-7s |",
                what, t[0] / 1e6, t[1] / 1e6, rate, unit);
        rows.add(line);
        System.out.println(line);
    }

    private void print() {
        System.out.println();
        System.out.println("OpenCL results (kernel = device time from profiling events; call = whole TensorOps call incl. copies)");
        System.out.println(String.format(Locale.ROOT, "| %-58s | %10s | %10s | %18s |", "case", "kernel ms", "call ms", "rate (kernel)"));
        System.out.println("|" + "-".repeat(60) + "|" + "-".repeat(12) + "|" + "-".repeat(12) + "|" + "-".repeat(20) + "|");
        rows.forEach(System.out::println);
    }

    // ---- matmul -------------------------------------------------------------------------------------------------

    private void matmul() {
        int n = quick ? 256 : 4096;
        int[][] shapes = quick
                ? new int[][]{{256, 256}, {384, 192}}
                : new int[][]{{4096, 4096}, {24576, 6144}, {6144, 8192}, {9216, 6144}, {6144, 9216}};
        String[] names = quick ? new String[]{"square", "qkv-like"}
                : new String[]{"square 4096^3", "M1 qkv_proj", "M1 out_proj", "M1 expert w1/w3", "M1 expert w2"};
        for (int s = 0; s < shapes.length; s++) {
            int out = shapes[s][0], in = shapes[s][1];
            for (DType d : s == 0 || s == 1 ? new DType[]{DType.F32, DType.BF16} : new DType[]{DType.F32}) {
                Tensor w = weight(d, out, in, 11 + s);
                float[] x = random(n * in, 1f, 3 + s), y = new float[n * out];
                double flops = 2.0 * n * in * out;
                long[] t = time(() -> ops.aparapiMatmul(x, n, w, y), Math.max(3, reps / 2));
                row(String.format(Locale.ROOT, "matmul (Aparapi) %s %s n=%d out=%d in=%d", names[s], d, n, out, in), t,
                        flops / t[0], "GFLOP/s");
                ResidentOps r = ops.resident();
                if (r != null) {
                    // the tiled GEMM of resident.cl: kernel = back-to-back launches on device buffers; call = the
                    // array interface's product (x uploaded, y read back)
                    boolean tc = r.productsOnTensorCores();
                    String gemm = r.gemm();
                    try (DeviceOps.Buffer xb = r.upload(x); DeviceOps.Buffer yb = r.floats((long) n * out)) {
                        r.useTensorCores(false);
                        long kernel = timeResident(r, () -> r.matmul(xb, n, w, yb), Math.max(3, reps / 2))[0];
                        long call = time(() -> ops.matmul(x, n, w, y), Math.max(3, reps / 2))[1];
                        row(String.format(Locale.ROOT, "matmul (resident GEMM) %s %s n=%d out=%d in=%d", names[s], d, n, out,
                                in), new long[]{kernel, call}, flops / kernel, "GFLOP/s");
                        if (r.useTensorCores(true)) {  // tensorcore.cl: bf16 mma.sync, activations rounded to bf16
                            // bf16 weights: every GEMM form the probe checked, side by side (fp32 weights: v1 only)
                            for (String g : d == DType.BF16 ? r.gemms() : List.of(r.gemm())) {
                                r.useGemm(g);
                                kernel = timeResident(r, () -> r.matmul(xb, n, w, yb), Math.max(3, reps / 2))[0];
                                call = time(() -> ops.matmul(x, n, w, y), Math.max(3, reps / 2))[1];
                                row(String.format(Locale.ROOT, "matmul (tensor cores %s) %s %s n=%d out=%d in=%d",
                                        d == DType.BF16 ? g : "v1", names[s], d, n, out, in), new long[]{kernel, call},
                                        flops / kernel, "GFLOP/s");
                            }
                        }
                    } finally {
                        r.useGemm(gemm);
                        r.useTensorCores(tc);
                    }
                }
                ops.evict(List.of(w));
            }
        }
    }

    /**
     * The tensor-core GEMM forms (v1 and the v2 forms the probe checked) side by side on bf16 weights, kernel time
     * only, at the shapes of the 1.25B M1-shape model's 4K-token prefill (hidden 2048, 16 heads of 128 with 4 KV
     * heads, expert intermediate 1024; an expert sees about 4096 * 2 / 8 = 1024 rows) and the 4096^3 square.
     */
    private void gemm() {
        ResidentOps r = ops.resident();
        boolean tc = r != null && r.productsOnTensorCores();
        if (r == null || !r.useTensorCores(true)) {
            System.out.println("gemm: no tensor cores on this device (" + (r == null ? "no resident path" : r.tensorCores()) + ")");
            if (r != null) r.useTensorCores(false);
            return;
        }
        // {n, out, in}
        int[][] shapes = quick ? new int[][]{{256, 256, 256}, {100, 384, 192}}
                : new int[][]{{4096, 4096, 4096}, {4096, 3072, 2048}, {4096, 2048, 2048}, {1024, 1024, 2048},
                        {1024, 2048, 1024}, {4096, 6144, 2048}};
        String[] names = quick ? new String[]{"square", "ragged"}
                : new String[]{"square 4096^3", "1.25B qkv", "1.25B o_proj", "1.25B expert w1/w3", "1.25B expert w2",
                        "1.25B lightning qkv"};
        String gemm = r.gemm();
        boolean small = r.smallTiles();
        try {
            for (int s = 0; s < shapes.length; s++) {
                int n = shapes[s][0], out = shapes[s][1], in = shapes[s][2];
                Tensor w = weight(DType.BF16, out, in, 41 + s);
                float[] x = random(n * in, 1f, 7 + s);
                double flops = 2.0 * n * in * out;
                try (DeviceOps.Buffer xb = r.upload(x); DeviceOps.Buffer yb = r.floats((long) n * out)) {
                    // each form as itself, then the engine's choice (the default form, v2s for products of few tiles)
                    List<String> forms = new ArrayList<>(r.gemms());
                    if (forms.size() > 1) forms.add("auto");
                    for (String g : forms) {
                        r.smallTiles(g.equals("auto"));
                        r.useGemm(g.equals("auto") ? gemm : g);
                        long kernel = timeResident(r, () -> r.matmul(xb, n, w, yb), Math.max(3, reps))[0];
                        row(String.format(Locale.ROOT, "gemm %-6s %s n=%d out=%d in=%d", g, names[s], n, out, in),
                                new long[]{kernel, kernel}, flops / kernel, "GFLOP/s");
                    }
                }
                ops.evict(List.of(w));
            }
        } finally {
            r.smallTiles(small);
            r.useGemm(gemm);
            r.useTensorCores(tc);
        }
    }

    private void matvec() {
        int[][] shapes = quick ? new int[][]{{512, 768}} : new int[][]{{6144, 8192}, {24576, 6144}, {9216, 6144}};
        String[] names = quick ? new String[]{"small"} : new String[]{"M1 out_proj", "M1 qkv_proj", "M1 expert w1"};
        for (int s = 0; s < shapes.length; s++) {
            int out = shapes[s][0], in = shapes[s][1];
            for (DType d : new DType[]{DType.F32, DType.BF16}) {
                Tensor w = weight(d, out, in, 21 + s);
                for (int n : new int[]{1, 8}) {
                    if (n == 8 && s > 0) continue;
                    float[] x = random(n * in, 1f, 5), y = new float[n * out];
                    long[] t = time(() -> ops.aparapiMatmul(x, n, w, y), reps * 4);
                    double bytes = (double) out * in * d.bytes();
                    row(String.format(Locale.ROOT, "matvec (Aparapi) %s %s n=%d out=%d in=%d (weight bytes)", names[s], d, n, out, in),
                            t, bytes / t[0], "GB/s");
                }
                ops.evict(List.of(w));
            }
        }
    }

    // ---- lightning ----------------------------------------------------------------------------------------------

    private void lightningPrefill() {
        int n = quick ? 1024 : 32768, heads = quick ? 8 : 64, dim = quick ? 64 : 128, block = 256;
        int hd = heads * dim;
        float[] q = random(n * hd, 0.1f, 1), k = random(n * hd, 0.1f, 2), v = random(n * hd, 1f, 3);
        float[] decay = new float[heads];
        for (int h = 0; h < heads; h++) decay[h] = (float) (Math.pow(2, -8.0 * (h + 1) / heads) * 0.5);
        float[] state = new float[heads * dim * dim], out = new float[n * hd];
        long[] t = time(() -> {
            Arrays.fill(state, 0f);
            ops.lightningPrefill(q, k, v, n, heads, dim, decay, block, state, out);
        }, Math.max(2, reps / 2));
        // useful work of the block algorithm: QK^T (causal half) and PV inside blocks, Q S_prev, K^T V per block
        double blocks = Math.ceil((double) n / block);
        double flops = heads * blocks * (2.0 * block * block * dim + 2.0 * 2 * block * dim * dim);
        row(String.format(Locale.ROOT, "lightning prefill n=%d H=%d D=%d block=%d", n, heads, dim, block), t,
                flops / t[0], "GFLOP/s");
    }

    private void decode() {
        int heads = quick ? 8 : 64, dim = quick ? 64 : 128;
        int hd = heads * dim, per = heads * dim * dim;
        float[] decay = new float[heads];
        Arrays.fill(decay, 0.05f);
        for (int batch : new int[]{1, 8}) {
            float[] q = random(batch * hd, 1f, 7), k = random(batch * hd, 1f, 8), v = random(batch * hd, 1f, 9);
            float[][] states = new float[batch][];
            for (int s = 0; s < batch; s++) states[s] = random(per, 0.1f, 10 + s);
            float[] out = new float[batch * hd];
            long[] t = time(() -> ops.lightningDecode(q, k, v, batch, heads, dim, decay, states, out), reps * 4);
            double bytes = 2.0 * batch * per * 4; // state read and written
            row(String.format(Locale.ROOT, "lightning decode B=%d H=%d D=%d (state r+w)", batch, heads, dim), t,
                    bytes / t[0], "GB/s");
        }
        int kvHeads = quick ? 2 : 8;
        for (int len : quick ? new int[]{2048} : new int[]{4096, 32768, 131072}) {
            int kvd = kvHeads * dim;
            float[] kc = random(len * kvd, 1f, 30), vc = random(len * kvd, 1f, 31);
            for (int n : new int[]{1, 4}) {
                float[] q = random(n * hd, 1f, 32), out = new float[n * hd];
                int start = len - n;
                long[] t = time(() -> ops.softmaxAttention(q, n, heads, kvHeads, dim, kc, vc, start, out), reps * 2);
                double bytes = 2.0 * len * kvd * 4; // keys and values read once
                row(String.format(Locale.ROOT, "decode attention n=%d T=%d H=%d KV=%d D=%d (K+V bytes)", n, len, heads,
                        kvHeads, dim), t, bytes / t[0], "GB/s");
            }
        }
    }

    private void attentionPrefill() {
        int n = quick ? 512 : 4096, heads = quick ? 8 : 64, kvHeads = quick ? 2 : 8, dim = quick ? 64 : 128;
        float[] q = random(n * heads * dim, 1f, 40), kc = random(n * kvHeads * dim, 1f, 41),
                vc = random(n * kvHeads * dim, 1f, 42), out = new float[n * heads * dim];
        long[] t = time(() -> ops.softmaxAttention(q, n, heads, kvHeads, dim, kc, vc, 0, out), Math.max(3, reps / 2));
        double flops = 4.0 * heads * dim * (n * (n + 1.0) / 2); // causal QK^T and PV
        row(String.format(Locale.ROOT, "flash attention prefill n=%d H=%d KV=%d D=%d", n, heads, kvHeads, dim), t,
                flops / t[0], "GFLOP/s");
    }

    // ---- device-resident decode kernels ----------------------------------------------------------------------------

    /** Median over 5 batches of the time per call of {@code inner} back-to-back calls ended by one finish. */
    private long[] timeResident(ResidentOps d, Runnable call, int inner) {
        call.run();
        d.finish();
        long[] per = new long[5];
        for (int r = 0; r < per.length; r++) {
            long t0 = System.nanoTime();
            for (int i = 0; i < inner; i++) call.run();
            d.finish();
            per[r] = (System.nanoTime() - t0) / inner;
        }
        Arrays.sort(per);
        return new long[]{per[2], per[2]};
    }

    private void resident() {
        ResidentOps d = ops.resident();
        int inner = reps * 4;
        // bandwidth reference: a device-to-device copy, bytes read plus bytes written
        long copyFloats = quick ? 8L << 20 : 256L << 20;
        try (DeviceOps.Buffer a = d.floats(copyFloats); DeviceOps.Buffer b = d.floats(copyFloats)) {
            d.write(a, 0, random((int) Math.min(copyFloats, 1 << 24), 1f, 50), 0, (int) Math.min(copyFloats, 1 << 24));
            long[] t = timeResident(d, () -> d.copy(a, 0, b, 0, copyFloats), Math.max(4, reps));
            row(String.format(Locale.ROOT, "resident device copy %d MiB (read + write)", copyFloats * 4 >> 20), t,
                    2.0 * copyFloats * 4 / t[0], "GB/s");
        }
        int[][] shapes = quick ? new int[][]{{512, 768}} : new int[][]{{6144, 8192}, {24576, 6144}, {9216, 6144}, {2048, 2048}};
        String[] names = quick ? new String[]{"small"} : new String[]{"M1 out_proj", "M1 qkv_proj", "M1 expert w1", "1.25B out_proj"};
        for (int s = 0; s < shapes.length; s++) {
            int out = shapes[s][0], in = shapes[s][1];
            for (DType dt : new DType[]{DType.F32, DType.BF16}) {
                Tensor w = weight(dt, out, in, 61 + s);
                for (int n : new int[]{1, 8}) {
                    if (n == 8 && s > 0 && s < 3) continue;
                    try (DeviceOps.Buffer x = d.upload(random(n * in, 1f, 5)); DeviceOps.Buffer y = d.floats((long) n * out)) {
                        long[] t = timeResident(d, () -> d.matmul(x, n, w, y), inner);
                        row(String.format(Locale.ROOT, "resident matvec %s %s n=%d out=%d in=%d (weight bytes)", names[s], dt, n,
                                out, in), t, (double) out * in * dt.bytes() / t[0], "GB/s");
                    }
                }
                d.evict(List.of(w));
            }
        }
        int heads = quick ? 8 : 64, dim = quick ? 64 : 128, kvHeads = quick ? 2 : 8, hd = heads * dim;
        float[] decay = new float[heads];
        Arrays.fill(decay, 0.05f);
        try (DeviceOps.Buffer qkv = d.upload(random(3 * hd, 1f, 7)); DeviceOps.Buffer db = d.upload(decay);
             DeviceOps.Buffer st = d.upload(random(heads * dim * dim, 0.1f, 8)); DeviceOps.Buffer o = d.floats(hd)) {
            long[] t = timeResident(d, () -> d.lightningStep(qkv, 0, heads, dim, db, st, o), inner);
            row(String.format(Locale.ROOT, "resident lightning step H=%d D=%d (state r+w)", heads, dim), t,
                    2.0 * heads * dim * dim * 4 / t[0], "GB/s");
        }
        for (int len : quick ? new int[]{2048} : new int[]{4096, 32768, 131072}) {
            int kvd = kvHeads * dim;
            try (DeviceOps.Buffer kc = d.upload(random(len * kvd, 1f, 30)); DeviceOps.Buffer vc = d.upload(random(len * kvd, 1f, 31));
                 DeviceOps.Buffer q = d.upload(random(hd, 1f, 32)); DeviceOps.Buffer o = d.floats(hd)) {
                for (ResidentOps.AttentionKernel kernel : List.of(ResidentOps.AttentionKernel.GENERAL,
                        ResidentOps.AttentionKernel.BANDWIDTH)) {
                    d.attentionKernel(kernel);
                    long[] t = timeResident(d, () -> d.decodeAttention(q, 0, heads, kvHeads, dim, kc, vc, len, o), inner);
                    row(String.format(Locale.ROOT, "resident decode attention %s n=1 T=%d H=%d KV=%d D=%d (K+V bytes)",
                            kernel.name().toLowerCase(Locale.ROOT), len, heads, kvHeads, dim), t, 2.0 * len * kvd * 4 / t[0], "GB/s");
                }
                d.attentionKernel(ResidentOps.AttentionKernel.AUTO);
            }
        }
        // device prefill: a chunk's lightning scan and causal attention (the chunk's keys appended after a prefix)
        int chunk = quick ? 256 : 2048;
        try (DeviceOps.Buffer qkv = d.upload(random(chunk * 3 * hd, 0.1f, 70)); DeviceOps.Buffer db = d.upload(decay);
             DeviceOps.Buffer st = d.upload(random(heads * dim * dim, 0.1f, 71)); DeviceOps.Buffer o = d.floats((long) chunk * hd)) {
            long[] t = timeResident(d, () -> d.lightningScan(qkv, chunk, heads, dim, db, st, o), Math.max(2, reps / 4));
            double flops = 4.0 * chunk * heads * dim * dim; // state update and q S per token
            row(String.format(Locale.ROOT, "resident lightning scan n=%d H=%d D=%d", chunk, heads, dim), t, flops / t[0],
                    "GFLOP/s");
        }
        for (int prefix : quick ? new int[]{0} : new int[]{0, 30720}) {
            int total = prefix + chunk, kvd = kvHeads * dim;
            try (DeviceOps.Buffer kc = d.upload(random(total * kvd, 1f, 72)); DeviceOps.Buffer vc = d.upload(random(total * kvd, 1f, 73));
                 DeviceOps.Buffer q = d.upload(random(chunk * hd, 1f, 74)); DeviceOps.Buffer o = d.floats((long) chunk * hd)) {
                long[] t = timeResident(d, () -> d.causalAttention(q, chunk, heads, kvHeads, dim, kc, vc, prefix + 1, o),
                        Math.max(2, reps / 4));
                double bytes = 2.0 * kvd * 4 * ((double) chunk * prefix + chunk * (chunk + 1.0) / 2); // K+V per query
                row(String.format(Locale.ROOT, "resident causal attention rows=%d after %d H=%d KV=%d D=%d (K+V bytes per query)",
                        chunk, prefix, heads, kvHeads, dim), t, bytes / t[0], "GB/s");
            }
        }
    }

    /**
     * The fused decode step's bf16 products at the 1.25B M1 shape (hidden 2048, 16 heads of 128, 8 experts top-2 of
     * intermediate 1024, vocabulary 32000), at 1 and 8 rows, with the decode kernels v2 and v3 (rows a lane group
     * auto with the tails apart, then auto, 1, 2 and 4 "fused": the norms and router in the products' tails, a lightning
     * layer one launch at one row): the whole lightning layer at one row (projections, step, norm and gate), the
     * output projection and the LM head
     * (matrix-vector alone), the lightning layer's input projections (one launch), the output projection with the norm
     * and router (two launches, one with tails: the router's share is the difference to the first row), the experts
     * (gate/up, down, the residual and next norm: three launches, two with tails; bytes of the distinct chosen experts). Host time of back-to-back launches ({@link #timeResident}); GB/s of weight bytes.
     */
    private void decodeV3() {
        ResidentOps d = ops.resident();
        DeviceOps dd = d;
        var f = dd.fused();
        if (f == null) {
            System.out.println("decode3: no fused decode step on this device");
            return;
        }
        int h = quick ? 256 : 2048, hd = quick ? 256 : 2048, I = quick ? 128 : 1024, E = 8, K = 2, vocab = quick ? 1000 : 32000;
        int inner = reps * 4;
        int dim = 128, heads = hd / dim;
        long stride = (long) heads * dim * dim;
        Tensor wQkv = weight(DType.BF16, 3 * hd, h, 81), wGate = weight(DType.BF16, hd, h, 82);
        Tensor wo = weight(DType.BF16, h, hd, 83), router = weight(DType.BF16, E, h, 84);
        Tensor head = weight(DType.BF16, vocab, h, 85);
        Tensor[] w1 = new Tensor[E], w3 = new Tensor[E], w2 = new Tensor[E];
        for (int e = 0; e < E; e++) {
            w1[e] = weight(DType.BF16, I, h, 90 + e);
            w3[e] = weight(DType.BF16, I, h, 100 + e);
            w2[e] = weight(DType.BF16, h, I, 110 + e);
        }
        DeviceOps.ExpertSet set = d.experts(w1, w3, w2);
        String v3 = d.decodeKernels("v3");
        if (!v3.equals("v3")) System.out.println("decode3: v3 kernels not available: " + d.v3WhyNot());
        List<String[]> forms = new ArrayList<>();
        forms.add(new String[]{"v2", "0", "false"});
        if (v3.equals("v3")) {
            forms.add(new String[]{"v3", "0", "false"});
            for (String r : new String[]{"0", "1", "2", "4"}) forms.add(new String[]{"v3", r, "true"});
        }
        try {
            for (int n : new int[]{1, 8}) {
                int[] idv = new int[n * K];
                for (int t = 0; t < n; t++) { idv[t * K] = (3 * t) % E; idv[t * K + 1] = (3 * t + 1) % E; }
                long chosen = Arrays.stream(idv).distinct().count();
                try (DeviceOps.Buffer x = d.upload(random(n * h, 1f, 120)); DeviceOps.Buffer o = d.upload(random(n * hd, 1f, 121));
                     DeviceOps.Buffer qkv = d.floats((long) n * 3 * hd); DeviceOps.Buffer g = d.floats((long) n * hd);
                     DeviceOps.Buffer a = d.floats((long) n * h); DeviceOps.Buffer logits = d.floats((long) n * vocab);
                     DeviceOps.Buffer normW = d.upload(random(h, 1f, 122)); DeviceOps.Buffer ids = d.ints(n * K);
                     DeviceOps.Buffer wts = d.floats(n * K); DeviceOps.Buffer rids = d.ints(n * K);
                     DeviceOps.Buffer rwts = d.floats(n * K); DeviceOps.Buffer act = d.floats((long) n * K * I);
                     DeviceOps.Buffer pairs = d.floats((long) n * K * h);
                     DeviceOps.Buffer decay = d.upload(random(heads, 0.05f, 123));
                     DeviceOps.Buffer pool = d.upload(random((int) stride, 0.1f, 124))) {
                    d.write(ids, idv, n * K);
                    d.write(wts, 0, new float[n * K], 0, n * K);
                    f.rows(new int[n], new int[n], new int[n], n);
                    for (String[] form : forms) {
                        d.decodeKernels(form[0]);
                        int rows = Integer.parseInt(form[1]);
                        d.decodeV3Rows(rows);
                        boolean tails = Boolean.parseBoolean(form[2]);
                        d.decodeV3Tails(tails);
                        d.decodeV3Lightning(tails);
                        String tag = form[0].equals("v2") ? "v2" : "v3 r" + (rows == 0 ? "auto" : rows) + (tails ? " fused" : "");
                        long[] t = timeResident(d, () -> d.matmul(o, n, wo, a), inner);
                        row(String.format(Locale.ROOT, "decode3 %-13s n=%d output proj %dx%d", tag, n, h, hd), t,
                                2.0 * h * hd / t[0], "GB/s");
                        long mv = t[0];
                        t = timeResident(d, () -> d.matmul(x, n, head, logits), Math.max(4, inner / 4));
                        row(String.format(Locale.ROOT, "decode3 %-13s n=%d LM head %dx%d", tag, n, vocab, h), t,
                                2.0 * vocab * h / t[0], "GB/s");
                        t = timeResident(d, () -> f.lightningProjections(x, n, wQkv, wGate, qkv, g), inner);
                        row(String.format(Locale.ROOT, "decode3 %-13s n=%d lightning proj %dx%d", tag, n, 4 * hd, h), t,
                                2.0 * 4 * hd * h / t[0], "GB/s");
                        if (n == 1) {  // the whole lightning layer: two launches, or one (v3 fused)
                            t = timeResident(d, () -> {
                                if (!f.lightningLayer(x, n, wQkv, wGate, qkv, g, heads, dim, decay, pool, 0, 1, stride, o,
                                        normW, 1e-5f)) {
                                    f.lightningProjections(x, n, wQkv, wGate, qkv, g);
                                    f.lightning(qkv, n, heads, dim, decay, pool, 0, 1, stride, o, g, normW, 1e-5f);
                                }
                            }, inner);
                            row(String.format(Locale.ROOT, "decode3 %-13s n=%d lightning layer H=%d D=%d", tag, n, heads, dim),
                                    t, (2.0 * 4 * hd * h + 2.0 * heads * dim * dim * 4) / t[0], "GB/s");
                        }
                        t = timeResident(d, () -> f.outputAndRoute(o, n, wo, a, x, 1f, 1f, normW, 1e-5f, router, K, rids,
                                rwts, null, 0), inner);
                        row(String.format(Locale.ROOT, "decode3 %-13s n=%d out proj + norm/route (route %.1f us)", tag, n,
                                (t[0] - mv) / 1e3), t, 2.0 * (h * hd + E * h) / t[0], "GB/s");
                        t = timeResident(d, () -> f.experts(set, x, n, K, ids, wts, act, pairs, 1f, 1f, normW, 1e-5f), inner);
                        row(String.format(Locale.ROOT, "decode3 %-13s n=%d experts (%d chosen) 3x%dx%d", tag, n, chosen, I, h),
                                t, 2.0 * 3 * chosen * I * h / t[0], "GB/s");
                    }
                }
            }
        } finally {
            d.decodeKernels(null);
            d.decodeV3Rows(-1);
            d.decodeV3Tails(null);
            d.decodeV3Lightning(null);
            d.release(set);
            List<Tensor> all = new ArrayList<>(List.of(wQkv, wGate, wo, router, head));
            all.addAll(Arrays.asList(w1));
            all.addAll(Arrays.asList(w3));
            all.addAll(Arrays.asList(w2));
            d.evict(all);
        }
    }

    // ---- data ---------------------------------------------------------------------------------------------------

    private static float[] random(int n, float scale, long seed) {
        float[] a = new float[n];
        int chunk = 1 << 20;
        IntStream.range(0, (n + chunk - 1) / chunk).parallel().forEach(c -> {
            SplittableRandom r = new SplittableRandom(seed * 1_000_003L + c);
            for (int i = c * chunk, end = Math.min(n, i + chunk); i < end; i++) a[i] = (float) (r.nextDouble() * 2 - 1) * scale;
        });
        return a;
    }

    private static Tensor weight(DType d, int out, int in, long seed) {
        float[] v = random(out * in, 0.05f, seed);
        if (d == DType.F32) return Tensor.ofFloats("w" + seed, v, out, in);
        MemorySegment seg = MemorySegment.ofArray(new short[v.length]);
        ValueLayout.OfShort s16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < v.length; i++) seg.set(s16, 2L * i, Tensor.floatToBf16(v[i]));
        return new Tensor("w" + seed, DType.BF16, new long[]{out, in}, seg);
    }
}
