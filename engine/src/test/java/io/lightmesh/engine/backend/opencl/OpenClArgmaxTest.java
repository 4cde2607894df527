package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.DeviceOps.Buffer;
import io.lightmesh.engine.generate.Sampler;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * resident.cl's {@code argmax_rows} (a greedy decode step's choice, read back instead of the logits) gives what the
 * host's {@link Sampler#argmax} gives on every row, including the rows where the two could part: ties (first index
 * wins, also across the work-items' strided shares and +0 against -0), NaNs (never chosen; a NaN first logit gives 0),
 * every logit -inf or NaN, +inf, a maximum in the last element, rows shorter than a work-group and not a multiple of it.
 */
class OpenClArgmaxTest {
    private static ResidentOps r() {
        ResidentOps r = OpenClTestSupport.ops().resident();
        Assumptions.assumeTrue(r != null, "resident path off (-Dlightmesh.opencl.resident=false)");
        return r;
    }

    @Test
    void everyRowAsTheHostScan() {
        ResidentOps d = r();
        Random rnd = new Random(5);
        for (int V : new int[]{1, 5, 256, 1000, 32000}) {
            List<float[]> rows = new ArrayList<>();
            float[] random = new float[V];
            for (int i = 0; i < V; i++) random[i] = (float) rnd.nextGaussian();
            rows.add(random);
            float[] ties = new float[V]; // the maximum at several indices, in different work-items' shares
            for (int i = 0; i < V; i++) ties[i] = rnd.nextFloat();
            for (int i = V / 3; i < V; i += 97) ties[i] = 2f;
            rows.add(ties);
            float[] equal = new float[V]; // every logit equal: index 0
            Arrays.fill(equal, 0.5f);
            rows.add(equal);
            float[] nanFirst = random.clone();
            nanFirst[0] = Float.NaN;
            rows.add(nanFirst);
            float[] nanAtMax = random.clone(); // the largest replaced by NaN: the next largest
            nanAtMax[Sampler.argmax(random)] = Float.NaN;
            rows.add(nanAtMax);
            float[] allNan = new float[V];
            Arrays.fill(allNan, Float.NaN);
            rows.add(allNan);
            float[] allMinusInf = new float[V];
            Arrays.fill(allMinusInf, Float.NEGATIVE_INFINITY);
            rows.add(allMinusInf);
            float[] inf = random.clone();
            inf[V - 1] = Float.POSITIVE_INFINITY;
            rows.add(inf);
            float[] zeros = new float[V]; // -0 first, +0 later: equal, so the first
            Arrays.fill(zeros, -1f);
            zeros[V / 2] = -0f;
            zeros[V - 1] = 0f;
            rows.add(zeros);
            float[] all = new float[rows.size() * V];
            for (int r = 0; r < rows.size(); r++) System.arraycopy(rows.get(r), 0, all, r * V, V);
            int[] got = new int[rows.size()];
            try (Buffer logits = d.upload(all); Buffer out = d.ints(rows.size())) {
                d.argmaxRows(logits, rows.size(), V, out);
                d.read(out, got, got.length);
            }
            for (int r = 0; r < rows.size(); r++) assertEquals(Sampler.argmax(rows.get(r)), got[r], "V=" + V + " row " + r);
        }
    }
}
