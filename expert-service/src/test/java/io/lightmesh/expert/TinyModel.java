package io.lightmesh.expert;

import io.lightmesh.engine.backend.ReferenceOps;
import io.lightmesh.engine.checkpoint.SyntheticCheckpoint;
import io.lightmesh.engine.model.LocalExperts;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.mesh.Floats;
import io.lightmesh.mesh.MeshModel;
import io.lightmesh.proto.v1.ActivationDType;
import io.lightmesh.proto.v1.ExpertBatch;

import java.io.IOException;
import java.nio.file.Path;
import java.util.SplittableRandom;

/** A seeded synthetic model (8 layers, 4 experts, top-2, hidden 64) and expert calls on it, for the shard tests. */
final class TinyModel {
    final MeshModel model;
    final int L, E, h, k;

    TinyModel(Path dir) throws IOException {
        SyntheticCheckpoint.write(dir, SyntheticCheckpoint.Shape.tiny(), DType.F32, 5, false);
        model = MeshModel.load(dir, new ReferenceOps());
        L = model.config().numLayers();
        E = model.config().numExperts();
        h = model.config().hiddenSize();
        k = model.config().topK();
    }

    /** One call's inputs: n rows, each with k distinct experts and weights. */
    record Call(int layer, int n, float[] x, int[] experts, float[] weights) {}

    Call call(long seed, int layer, int n) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[n * h];
        for (int i = 0; i < x.length; i++) x[i] = (float) r.nextGaussian();
        int[] ex = new int[n * k];
        float[] w = new float[n * k];
        for (int t = 0; t < n; t++) {
            int a = r.nextInt(E), b = (a + 1 + r.nextInt(E - 1)) % E;
            ex[t * k] = a;
            ex[t * k + 1] = b;
            float p = (float) r.nextDouble();
            w[t * k] = p;
            w[t * k + 1] = 1 - p;
        }
        return new Call(layer, n, x, ex, w);
    }

    /** What the in-process experts compute for the call. */
    float[] inProcess(Call c) {
        float[] out = new float[c.n() * h];
        new LocalExperts(model.config(), model.model().weights(), model.model().ops()).run(c.layer(), c.x(), c.n(), k, c.experts(), c.weights(), out);
        return out;
    }

    /** The call as one batch with every slot (none skipped). */
    ExpertBatch batch(Call c, long id) {
        ExpertBatch.Builder b = ExpertBatch.newBuilder().setCallId(id).setLayer(c.layer()).setNumTokens(c.n()).setTopK(k)
                .setDtype(ActivationDType.ACTIVATION_DTYPE_F32).setHidden(Floats.toBytes(c.x(), 0, c.n() * h));
        for (int i = 0; i < c.n() * k; i++) b.addExperts(c.experts()[i]).addWeights(c.weights()[i]);
        return b.build();
    }

    float[] floats(com.google.protobuf.ByteString bytes, int n) {
        float[] f = new float[n * h];
        Floats.fromBytes(bytes, f, 0, n * h);
        return f;
    }
}
