package io.lightmesh.launcher;

import io.grpc.Server;
import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
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
 * path the forward pass took.
 *
 * <p>Options: --shape tiny|small|100m|1b (100m), --dtype f32|bf16 (bf16), --backend B (opencl), --shards N (2),
 * --batches 1,16, --prompt-len N (256), --steps N (64).
 */
public final class ShardDecodeBench {
    public static void main(String[] args) throws Exception {
        String shape = "100m", backend = "opencl", dtype = "bf16";
        int shards = 2, promptLen = 256, steps = 64;
        int[] batches = {1, 16};
        for (int i = 0; i + 1 < args.length; i += 2) {
            String v = args[i + 1];
            switch (args[i]) {
                case "--shape" -> shape = v;
                case "--dtype" -> dtype = v;
                case "--backend" -> backend = v;
                case "--shards" -> shards = Integer.parseInt(v);
                case "--batches" -> batches = java.util.Arrays.stream(v.split(",")).mapToInt(Integer::parseInt).toArray();
                case "--prompt-len" -> promptLen = Integer.parseInt(v);
                case "--steps" -> steps = Integer.parseInt(v);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        Path dir = Files.createTempDirectory("lightmesh-shard-bench");
        SyntheticCheckpoint.write(dir, shape(shape), "f32".equals(dtype) ? DType.F32 : DType.BF16, 1, false);
        try (MeshModel model = MeshModel.load(dir, Backends.create(backend))) {
            var c = model.config();
            System.out.printf(Locale.ROOT, "shard-bench: shape %s (%s, hidden %d, %d layers, %d experts top-%d), backend %s, %d shard(s), prompt %d, %d steps%n",
                    shape, dtype, c.hiddenSize(), c.numLayers(), c.numExperts(), c.topK(), Backends.describe(model.model().ops()), shards, promptLen, steps);
            List<Server> servers = new ArrayList<>();
            List<String> addresses = new ArrayList<>();
            for (int s = 0; s < shards; s++) {
                int port;
                try (java.net.ServerSocket free = new java.net.ServerSocket(0)) { port = free.getLocalPort(); }
                String address = "127.0.0.1:" + port;
                ExpertShard shard = new ExpertShard(new ExpertPlacement.Shard("expert-" + s, address, new int[0],
                        ExpertPlacement.expertsOf(s, shards, c.numExperts())), model);
                System.out.println("  shard " + s + ": experts " + shard.compute());
                servers.add(Grpc.serve("127.0.0.1", port, shard.services(), true));
                addresses.add(address);
            }
            ExpertPlacement placement = ExpertPlacement.roundRobin(c.numLayers(), c.numExperts(), addresses);
            try (RemoteExperts remote = new RemoteExperts(placement, c.hiddenSize(), 30_000)) {
                MiniMaxModel local = model.model(), pingPong = local.withExperts(remote).withMicroBatching(true),
                        plain = local.withExperts(remote).withMicroBatching(false);
                for (int b : batches) {
                    run("experts in-process", local, b, promptLen, steps, c.vocabSize());
                    run(shards + " remote shards, ping-pong", pingPong, b, promptLen, steps, c.vocabSize());
                    run(shards + " remote shards, no ping-pong", plain, b, promptLen, steps, c.vocabSize());
                }
            } finally {
                servers.forEach(Grpc::shutdown);
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

    private static void run(String what, MiniMaxModel m, int batch, int promptLen, int steps, int vocab) {
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
        long t1 = System.nanoTime();
        for (int i = 0; i < steps; i++) next = greedy(m.decode(states, next));
        double s = (System.nanoTime() - t1) / 1e9;
        System.out.printf(Locale.ROOT, "  %-32s batch %2d: prefill %8.0f tok/s | decode %7.2f ms/step, %8.0f tok/s | %s%n",
                what, batch, batch * promptLen / prefillS, s * 1e3 / steps, batch * steps / s, m.path());
        for (SequenceState st : states) st.discardDevice();
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
