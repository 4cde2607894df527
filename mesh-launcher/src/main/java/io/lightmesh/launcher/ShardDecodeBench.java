package io.lightmesh.launcher;

import io.grpc.Server;
import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.model.DeviceExperts;
import io.lightmesh.engine.model.MiniMaxModel;
import io.lightmesh.engine.model.SequenceState;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.expert.ExpertShard;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.RemoteExperts;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The engine with its experts on expert shards, without the rest of the mesh (no Kafka, router or state hand-off):
 * N expert shards on loopback gRPC servers in this process (on the same backend, so on a GPU their experts run
 * there as grouped products), and the model's forward pass calling them through {@link RemoteExperts}, against the
 * same model with its experts in-process. Prints, per variant (experts in-process; remote with ping-pong; remote
 * without) and batch size: prefill tokens/s, decode time per step (TPOT at batch 1) and decode tokens/s, and the
 * path the forward pass took; per remote variant where a call's time goes (the caller's round trip, its packing,
 * sending, parsing and unpacking, the slowest shard's own compute: {@link RemoteExperts.Breakdown}), the process's
 * CPU time per step, and how many batches the shards computed on the matrix-vector MoE kernels (small) and as grouped
 * products.
 *
 * <p>Options: --shape tiny|small|100m|1b (100m), --dtype f32|bf16 (bf16), --backend B (opencl), --shards N (2),
 * --batches 1,16, --prompt-len N (256), --steps N (64), --small-batch 16,0 (the shards' small-batch bound, one set of
 * shards per value in turn, side by side in one run: {@code lightmesh.shard.smallBatch}; default: the property's),
 * --variants local,pingpong,plain (which of the three to run), --worker-side fast,plain (the decode worker's side of a
 * remote call: sent from the decoding thread with one read-back, or on a pool thread with three; async, oneread: one
 * of the two alone;
 * {@code lightmesh.expert.asyncCalls}, {@code lightmesh.device.remoteOneRead}; default fast), --model DIR (a
 * checkpoint instead of a synthetic --shape, e.g. EngineBench's cached one), --inline false,true (the shards' decode batches
 * computed on their transport thread when the device is free, {@code lightmesh.shard.inlineDecode} with the priority gate;
 * a fresh set of shards per value; the remote calls are classed DECODE, as a decode worker's).
 */
public final class ShardDecodeBench {
    public static void main(String[] args) throws Exception {
        Flags f = new Flags("shard-bench", "Decode with the experts on remote shards against in-process experts.", System.out, args, 0,
                "shape", "dtype", "backend", "shards", "batches", "prompt-len", "steps", "small-batch", "variants", "worker-side", "model", "inline");
        String shape = f.get("shape", "100m"), backend = f.get("backend", "opencl"), dtype = f.get("dtype", "bf16");
        int shards = f.getInt("shards", 2), promptLen = f.getInt("prompt-len", 256), steps = f.getInt("steps", 64);
        int[] batches = f.ints("batches", new int[]{1, 16});
        int[] smallBatch = f.ints("small-batch", new int[]{Integer.getInteger("lightmesh.shard.smallBatch", DeviceExperts.SMALL_SLOTS)});
        List<String> variants = List.of(f.get("variants", "local,pingpong,plain").split(","));
        // the shards' decode batches on their transport thread when the device is free (lightmesh.shard.priority and
        // lightmesh.shard.inlineDecode), one set of shards per value in turn; default: the properties'
        String[] inline = f.get("inline", Boolean.toString(Boolean.getBoolean("lightmesh.shard.inlineDecode"))).split(",");
        // the decode worker's side of a remote call: fast (the call sent from the decoding thread, one read-back of
        // x | ids | weights) or plain (a pool thread per call, three read-backs), set per run by their properties
        List<String> sides = List.of(f.get("worker-side", "fast").split(","));
        for (String side : sides) {
            if (!List.of("fast", "plain", "async", "oneread").contains(side)) throw new IllegalArgumentException("--worker-side fast|plain|async|oneread, got " + side);
        }
        Path dir;
        if (f.get("model", null) != null) { // an existing checkpoint (EngineBench's cached one: no 30 s write)
            dir = Path.of(f.get("model", null));
            shape = dir.getFileName().toString();
            dtype = "as stored";
        } else {
            dir = Files.createTempDirectory("lightmesh-shard-bench");
            SyntheticCheckpoint.write(dir, shape(shape), "f32".equals(dtype) ? DType.F32 : DType.BF16, 1, false);
        }
        try (MeshModel model = MeshModel.load(dir, Backends.create(backend))) {
            var c = model.config();
            System.out.printf(Locale.ROOT, "shard-bench: shape %s (%s, hidden %d, %d layers, %d experts top-%d), backend %s, %d shard(s), prompt %d, %d steps, %d cores%n",
                    shape, dtype, c.hiddenSize(), c.numLayers(), c.numExperts(), c.topK(), Backends.describe(model.model().ops()), shards, promptLen, steps,
                    Runtime.getRuntime().availableProcessors());
            MiniMaxModel local = model.model();
            for (int combo = 0; combo < smallBatch.length * inline.length; combo++) {
                int round = combo / inline.length;
                boolean inl = Boolean.parseBoolean(inline[combo % inline.length].trim());
                // the shards read the properties when made (ExpertShard -> DeviceExperts): a fresh set for each bound
                System.setProperty("lightmesh.shard.smallBatch", Integer.toString(smallBatch[round]));
                if (inline.length > 1 || inl) {
                    System.setProperty("lightmesh.shard.priority", Boolean.toString(inl || Boolean.getBoolean("lightmesh.shard.priority")));
                    System.setProperty("lightmesh.shard.inlineDecode", Boolean.toString(inl));
                }
                List<Server> servers = new ArrayList<>();
                List<ExpertShard> made = new ArrayList<>();
                List<String> addresses = new ArrayList<>();
                for (int s = 0; s < shards; s++) {
                    int port;
                    try (java.net.ServerSocket free = new java.net.ServerSocket(0)) { port = free.getLocalPort(); }
                    String address = "127.0.0.1:" + port;
                    ExpertShard shard = new ExpertShard(new ExpertPlacement.Shard("expert-" + s, address, new int[0],
                            ExpertPlacement.expertsOf(s, shards, c.numExperts())), model);
                    System.out.println("  shard " + s + ": experts " + shard.compute() + ", small batches up to " + smallBatch[round] + " slots, decode batches "
                            + (inl ? "on the transport thread when the device is free" : "on the compute pool") + ", gRPC over " + Grpc.transport());
                    servers.add(shard.serve("127.0.0.1", port));
                    made.add(shard);
                    addresses.add(address);
                }
                ExpertPlacement placement = ExpertPlacement.roundRobin(c.numLayers(), c.numExperts(), addresses);
                // a decode worker's batches (ExpertBatch.call_class DECODE), as the mesh's decode worker sends them
                RemoteExperts.Settings settings = new RemoteExperts.Settings(30_000, 10_000, 5_000, "shard-bench")
                        .withCallClass(io.lightmesh.proto.v1.ExpertCallClass.EXPERT_CALL_CLASS_DECODE);
                try (RemoteExperts remote = new RemoteExperts(io.lightmesh.mesh.PlacementSource.fixed(placement), c.hiddenSize(), settings, true)) {
                    MiniMaxModel pingPong = local.withExperts(remote).withMicroBatching(true),
                            plain = local.withExperts(remote).withMicroBatching(false);
                    for (int si = 0; si < sides.size(); si++) {
                        String side = sides.get(si);
                        // async / oneread: one of the two cuts alone
                        System.setProperty("lightmesh.expert.asyncCalls", Boolean.toString(side.equals("fast") || side.equals("async")));
                        System.setProperty("lightmesh.device.remoteOneRead", Boolean.toString(side.equals("fast") || side.equals("oneread")));
                        String tag = (smallBatch.length > 1 ? ", small<=" + smallBatch[round] : "") + (sides.size() > 1 ? ", " + side : "")
                                + (inline.length > 1 ? (inl ? ", inline" : ", pooled") : "");
                        for (int b : batches) {
                            if (combo == 0 && si == 0 && variants.contains("local")) run("experts in-process", local, b, promptLen, steps, c.vocabSize(), null, made);
                            if (variants.contains("pingpong")) run(shards + " remote shards, ping-pong" + tag, pingPong, b, promptLen, steps, c.vocabSize(), remote, made);
                            if (variants.contains("plain")) run(shards + " remote shards, no ping-pong" + tag, plain, b, promptLen, steps, c.vocabSize(), remote, made);
                        }
                    }
                } finally {
                    servers.forEach(Grpc::shutdown);
                    made.forEach(ExpertShard::close);
                }
            }
        }
    }

    /** BenchServe's shapes (named here, not called there, so this bench needs no Kafka classes on its classpath). */
    static SyntheticCheckpoint.Shape shape(String name) {
        return switch (name) {
            case "tiny" -> SyntheticCheckpoint.Shape.tiny();
            case "small" -> new SyntheticCheckpoint.Shape(4096, 512, 16, 8, 2, 64, 32, 8, 2, 1024, 64);
            case "100m" -> new SyntheticCheckpoint.Shape(32000, 768, 8, 8, 2, 96, 48, 8, 2, 512, 256);
            // the 1.25B-parameter M1-shape model of the H200 EngineBench figures (hidden 2048, 16 layers, 8 experts top-2)
            case "1b" -> new SyntheticCheckpoint.Shape(32000, 2048, 16, 16, 4, 128, 64, 8, 2, 1024, 256);
            default -> throw new IllegalArgumentException("--shape tiny|small|100m|1b, got " + name);
        };
    }

    private static void run(String what, MiniMaxModel m, int batch, int promptLen, int steps, int vocab, RemoteExperts remote,
                            List<ExpertShard> shards) {
        SplittableRandom rnd = new SplittableRandom(7);
        List<SequenceState> states = new ArrayList<>();
        int[] next = new int[batch];
        long t0 = System.nanoTime();
        for (int i = 0; i < batch; i++) {
            SequenceState s = m.newState();
            next[i] = argmax(m.prefill(s, rnd.ints(promptLen, 0, vocab).toArray()));
            states.add(s);
        }
        double prefillS = (System.nanoTime() - t0) / 1e9;
        for (int i = 0; i < 4; i++) next = greedy(m.decode(states, next)); // warm this batch size
        if (remote != null) remote.resetStats();
        long[] paths0 = paths(shards);
        long wait0 = io.lightmesh.engine.model.ExpertWaits.nanos();
        long cpu0 = cpuNanos(), t1 = System.nanoTime();
        for (int i = 0; i < steps; i++) next = greedy(m.decode(states, next));
        double s = (System.nanoTime() - t1) / 1e9, cpuMs = (cpuNanos() - cpu0) / 1e6;
        System.out.printf(Locale.ROOT, "  %-44s batch %2d: prefill %8.0f tok/s | decode %7.2f ms/step, %8.0f tok/s, CPU %6.2f ms/step | %s%n",
                what, batch, batch * promptLen / prefillS, s * 1e3 / steps, batch * steps / s, cpuMs / steps, m.path());
        if (remote != null) {
            RemoteExperts.Breakdown b = remote.breakdown();
            long[] paths1 = paths(shards);
            double waitedMs = (io.lightmesh.engine.model.ExpertWaits.nanos() - wait0) / 1e6 / steps;
            System.out.printf(Locale.ROOT, "  %-44s          calls %.1f/step: round trip %.0f us (pack %.0f, send %.0f, parse %.0f, unpack %.0f us; "
                            + "slowest shard's compute %.0f us); shard batches small %d, grouped %d; decoder waited %.2f ms/step of %.2f ms/step round trips%n",
                    "", (double) b.calls() / steps, b.roundTripUs(), b.packUs(), b.sendUs(), b.parseUs(), b.unpackUs(), b.computeUs(),
                    paths1[0] - paths0[0], paths1[1] - paths0[1], waitedMs, b.calls() * b.roundTripUs() / 1e3 / steps);
        }
        for (SequenceState st : states) st.discardDevice();
    }

    /** The shards' batches so far on the matrix-vector MoE kernels and as grouped products (0, 0 on host arrays). */
    private static long[] paths(List<ExpertShard> shards) {
        long[] p = new long[2];
        for (ExpertShard sh : shards) {
            DeviceExperts.Paths d = sh.devicePaths();
            if (d != null) { p[0] += d.matvec(); p[1] += d.grouped(); }
        }
        return p;
    }

    /** CPU time of this process (every thread: the decoder, the gRPC transport, the shards' compute), where the JVM reports it. */
    private static long cpuNanos() {
        return java.lang.management.ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os
                ? os.getProcessCpuTime() : -1;
    }

    private static int[] greedy(float[][] logits) {
        int[] out = new int[logits.length];
        for (int i = 0; i < logits.length; i++) out[i] = argmax(logits[i]);
        return out;
    }

    private static int argmax(float[] v) {
        int best = 0;
        for (int i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
