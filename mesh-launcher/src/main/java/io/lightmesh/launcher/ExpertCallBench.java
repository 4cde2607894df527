package io.lightmesh.launcher;

import io.grpc.Server;
import io.lightmesh.engine.backend.Backends;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.expert.ExpertShard;
import io.lightmesh.mesh.ExpertPlacement;
import io.lightmesh.mesh.Grpc;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.mesh.RemoteExperts;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The cost of one remote expert call, isolated: N expert shards on loopback (each its own gRPC server, as in the
 * embedded mesh), one caller issuing the calls a decode step makes (one layer at a time, {@code --tokens} rows,
 * top-k experts each), timed end to end and against the shards' own compute time.
 *
 * <p>Options: --shape tiny|small, --shards N (2), --tokens N (1), --calls N (4000), --backend B (reference).
 */
public final class ExpertCallBench {
    public static void main(String[] args) throws Exception {
        Flags f = new Flags("expert-call-bench", "The cost of one remote expert call, isolated.", System.out, args, 0,
                "shape", "shards", "tokens", "calls", "backend");
        String shape = f.get("shape", "tiny"), backend = f.get("backend", "reference");
        int shards = f.getInt("shards", 2), tokens = f.getInt("tokens", 1), calls = f.getInt("calls", 4000);
        Path dir = Files.createTempDirectory("lightmesh-expert-bench");
        SyntheticCheckpoint.write(dir, BenchServe.shape(shape), DType.F32, 1, false);
        try (MeshModel model = MeshModel.load(dir, Backends.create(backend))) {
            var c = model.config();
            List<Server> servers = new ArrayList<>();
            List<String> addresses = new ArrayList<>();
            for (int s = 0; s < shards; s++) {
                int port = KraftBroker.freePort();
                String address = "127.0.0.1:" + port;
                ExpertShard shard = new ExpertShard(new ExpertPlacement.Shard("expert-" + s, address, new int[0],
                        ExpertPlacement.expertsOf(s, shards, c.numExperts())), model);
                servers.add(Grpc.serve("127.0.0.1", port, shard.services(), true));
                addresses.add(address);
            }
            ExpertPlacement placement = ExpertPlacement.roundRobin(c.numLayers(), c.numExperts(), addresses);
            try (RemoteExperts remote = new RemoteExperts(placement, c.hiddenSize(), 30_000)) {
                SplittableRandom rnd = new SplittableRandom(3);
                int h = c.hiddenSize(), k = c.topK();
                float[] x = new float[tokens * h], out = new float[tokens * h], w = new float[tokens * k];
                int[] ex = new int[tokens * k];
                for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
                Arrays.fill(w, 1f / k);
                double[] rtt = new double[calls];
                for (int i = -calls / 4; i < calls; i++) { // a quarter for warm-up
                    for (int t = 0; t < tokens; t++) for (int j = 0; j < k; j++) ex[t * k + j] = Math.floorMod(i + t + j * (c.numExperts() / k), c.numExperts());
                    long t0 = System.nanoTime();
                    remote.run(Math.floorMod(i, c.numLayers()), x, tokens, k, ex, w, out);
                    if (i >= 0) rtt[i] = (System.nanoTime() - t0) / 1e3;
                    if (i == -1) remote.resetStats();
                }
                double[] compute = remote.meanComputeMicrosPerLayer();
                double meanCompute = Arrays.stream(compute).filter(d -> !Double.isNaN(d)).average().orElse(0);
                double[] sorted = rtt.clone();
                Arrays.sort(sorted);
                double mean = Arrays.stream(rtt).average().orElse(0);
                System.out.printf(Locale.ROOT, "expert call: %d shards, %d token(s) x top-%d, hidden %d, %s backend, %d calls%n",
                        shards, tokens, k, h, model.model().ops().name(), calls);
                System.out.printf(Locale.ROOT, "  round trip us: mean %.0f  p50 %.0f  p90 %.0f  p99 %.0f; slowest shard's compute mean %.0f; "
                                + "added cost (mean round trip - compute) %.0f us%n",
                        mean, BenchServe.pct(sorted, 50), BenchServe.pct(sorted, 90), BenchServe.pct(sorted, 99), meanCompute, mean - meanCompute);
            } finally {
                servers.forEach(Grpc::shutdown);
            }
        }
    }
}
