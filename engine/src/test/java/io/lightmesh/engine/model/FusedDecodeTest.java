package io.lightmesh.engine.model;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.backend.FusedDecode;
import io.lightmesh.engine.backend.opencl.OpenClTestSupport;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.assertClose;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.poisoned;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.random;
import static io.lightmesh.engine.backend.opencl.OpenClTestSupport.weight;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * Every launch of the fused decode step ({@link FusedDecode}) against the per-operation {@link DeviceOps} calls it
 * stands for (each of which {@link ResidentOpsTest} checks against the host code), on the same device: random inputs,
 * outputs poisoned with NaN, batches of 1, 3 and 8 rows, ragged shapes. Tolerance: {@link OpenClTestSupport}'s
 * (relative L2 1e-4). Runs on PoCL without a GPU.
 */
class FusedDecodeTest {
    private static DeviceOps d() { return OpenClTestSupport.ops().resident(); }

    private static FusedDecode f() {
        FusedDecode f = d().fused();
        assertNotNull(f, "the OpenCL device offers the fused decode step");
        return f;
    }

    enum Dt { F32, BF16 }

    private static DType dtype(Dt t) { return t == Dt.F32 ? DType.F32 : DType.BF16; }

    private final List<Buffer> open = new ArrayList<>();

    private Buffer up(float[] v) {
        Buffer b = d().upload(v);
        open.add(b);
        return b;
    }

    private Buffer poison(int n) { return up(poisoned(n)); }

    private static float[] fetch(Buffer b, int n) {
        float[] out = new float[n];
        d().read(b, 0, out, 0, n);
        return out;
    }

    @org.junit.jupiter.api.AfterEach
    void close() {
        for (Buffer b : open) b.close();
        open.clear();
    }

    @Test
    void lightningStepOfEveryRowInOneLaunch() {
        DeviceOps d = d();
        FusedDecode f = f();
        Random rnd = new Random(31);
        for (int[] sh : new int[][]{{1, 2, 32}, {3, 3, 100}, {8, 2, 128}}) {
            int n = sh[0], H = sh[1], D = sh[2], HD = H * D, layers = 3, layer = 1;
            long stride = (H * D * D + d.viewAlignment() - 1) / d.viewAlignment() * d.viewAlignment();
            int slots = n + 2;
            int[] slot = new int[n];
            for (int t = 0; t < n; t++) slot[t] = (t * 3 + 1) % slots; // rows use scattered slots
            float[] decay = new float[H];
            for (int h = 0; h < H; h++) decay[h] = 0.01f + 0.3f * rnd.nextFloat();
            float[] poolInit = random(rnd, (int) (slots * layers * stride), 0.5f);
            Buffer pool = up(poolInit), db = up(decay), normW = up(random(rnd, HD, 1f));
            Buffer[] own = new Buffer[n];
            for (int t = 0; t < n; t++) {
                own[t] = up(Arrays.copyOfRange(poolInit, (int) ((slot[t] * layers + layer) * stride),
                        (int) ((slot[t] * layers + layer) * stride + H * D * D)));
            }
            for (int step = 0; step < 2; step++) {
                Buffer qkv = up(random(rnd, n * 3 * HD, 1f)), gate = up(random(rnd, n * HD, 1f));
                Buffer want = poison(n * HD), got = poison(n * HD);
                for (int t = 0; t < n; t++) d.lightningStep(qkv, t, H, D, db, own[t], want);
                d.normGate(want, n, HD, normW, 1e-6f, gate);
                f.rows(new int[n], new int[n], slot, n);
                f.lightning(qkv, n, H, D, db, pool, layer, layers, stride, got, gate, normW, 1e-6f);
                String what = "lightning " + Arrays.toString(sh) + " step " + step;
                assertClose(what + " out", fetch(want, n * HD), fetch(got, n * HD), n * HD);
                float[] all = fetch(pool, (int) (slots * layers * stride));
                for (int t = 0; t < n; t++) {
                    int at = (int) ((slot[t] * layers + layer) * stride);
                    assertClose(what + " state of row " + t, fetch(own[t], H * D * D),
                            Arrays.copyOfRange(all, at, at + H * D * D), H * D * D);
                }
            }
        }
    }
}
