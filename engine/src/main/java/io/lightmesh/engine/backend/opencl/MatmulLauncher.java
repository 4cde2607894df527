package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Owns the device copies of the weights and launches {@link MatmulKernel} on them.
 *
 * <p>Weights stay on the device: each weight {@link Tensor} (by identity) is converted once into a slab (fp32, or
 * bf16 kept as raw 16-bit; f16 is widened to fp32 on the way) which is uploaded on the first product that reads it and
 * never sent again. A slab is one {@link MatmulKernel} instance, because Aparapi gives each kernel instance its own
 * buffers: {@link #preload} packs many weights into few slabs (few OpenCL contexts); a weight first seen by
 * {@link #matmul} gets a slab of its own, sized exactly. The host keeps the slab arrays (Aparapi re-creates a buffer
 * from its array if the array moves), so weights on OpenCL cost their size once on the heap as well.
 *
 * <p>Activations are copied per call: x to the device, y back.
 */
final class MatmulLauncher implements AutoCloseable {
    private static final ValueLayout.OfChar U16 = ValueLayout.JAVA_CHAR_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Java arrays stop at 2^31 - 1 elements; a slab also stays under the device's largest allocation. */
    private static final long MAX_SLAB_ELEMENTS = Integer.MAX_VALUE - 16;

    /** Where a weight lives: its slab and the offset of W[0][0] in it. */
    private record Placement(Slab slab, int offset, int rows, int cols) {}

    /** One device-resident array of weights and the kernel instance that owns its buffer. */
    private static final class Slab {
        final MatmulKernel kernel;
        final boolean bf16;
        final Staging xStage = new Staging();
        final Staging yStage = new Staging();

        Slab(DeviceRuntime rt, float[] f32, char[] bf16) {
            kernel = rt.adopt(new MatmulKernel());
            this.bf16 = bf16 != null;
            kernel.wF32 = f32 != null ? f32 : new float[1];
            kernel.wBf16 = bf16 != null ? bf16 : new char[1];
            kernel.bf16 = this.bf16 ? 1 : 0;
            if (this.bf16) kernel.put(kernel.wBf16); else kernel.put(kernel.wF32);
        }
    }

    private final DeviceRuntime rt;
    private final long maxSlabElements;
    private final Map<Tensor, Placement> placements = new IdentityHashMap<>();
    private final List<Slab> slabs = new ArrayList<>();

    MatmulLauncher(DeviceRuntime rt) {
        this.rt = rt;
        long byDevice = rt.device().getMaxMemAllocSize() / 4; // fp32 elements
        this.maxSlabElements = Math.max(1, Math.min(MAX_SLAB_ELEMENTS, byDevice > 0 ? byDevice : MAX_SLAB_ELEMENTS));
    }

    /** {@code y[n, out] = x[n, in] . W^T}; see {@link io.lightmesh.engine.backend.TensorOps#matmul}. */
    synchronized void matmul(float[] x, int n, Tensor w, float[] y) {
        Placement p = placements.get(w);
        if (p == null) {
            preload(List.of(w));
            p = placements.get(w);
        }
        if (n == 0) return;
        MatmulKernel k = p.slab.kernel;
        int in = p.cols, out = p.rows;
        k.x = p.slab.xStage.in(x, n * in);
        k.y = p.slab.yStage.outFor(y, n * out);
        k.n = n;
        k.in = in;
        k.out = out;
        k.wOff = p.offset;
        k.put(k.x);
        if (n <= MatmulKernel.MV_MAX_N) {
            k.mode = MatmulKernel.MODE_MATVEC;
            int groups = ceilDiv(out, MatmulKernel.MV_ROWS);
            rt.launch(k, groups * MatmulKernel.THREADS, MatmulKernel.THREADS, "matvec " + w.name());
        } else {
            k.mode = MatmulKernel.MODE_TILED;
            int groups = ceilDiv(n, MatmulKernel.BM) * ceilDiv(out, MatmulKernel.BN);
            rt.launch(k, groups * MatmulKernel.THREADS, MatmulKernel.THREADS, "matmul " + w.name());
        }
        k.get(k.y);
        Staging.out(k.y, y, n * out);
    }

    /**
     * Converts the weights not yet on the device and packs them into as few slabs as fit (one per storage type,
     * split where a slab would pass the largest array or device allocation). They are uploaded with the first product
     * that reads each slab.
     */
    synchronized void preload(Collection<Tensor> weights) {
        List<Tensor> f32 = new ArrayList<>(), bf16 = new ArrayList<>();
        Set<Tensor> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        for (Tensor w : weights) {
            if (placements.containsKey(w) || !seen.add(w)) continue;
            if (w.rank() != 2) throw new IllegalArgumentException("matmul weight " + w + " is not 2-D");
            if (w.size() > maxSlabElements) {
                throw new IllegalArgumentException("weight " + w + " has " + w.size() + " elements; one OpenCL slab holds "
                        + maxSlabElements + " (split it along its rows)");
            }
            (w.dtype() == DType.BF16 ? bf16 : f32).add(w);
        }
        pack(f32, false);
        pack(bf16, true);
    }

    private void pack(List<Tensor> weights, boolean bf16) {
        int i = 0;
        while (i < weights.size()) {
            long total = 0;
            int j = i;
            while (j < weights.size() && total + weights.get(j).size() <= maxSlabElements) total += weights.get(j++).size();
            float[] f = bf16 ? null : new float[(int) total];
            char[] b = bf16 ? new char[(int) total] : null;
            int off = 0;
            List<Tensor> members = weights.subList(i, j);
            for (Tensor w : members) {
                if (bf16) copyBf16(w, b, off); else w.copyTo(0, f, off, (int) w.size());
                off += (int) w.size();
            }
            Slab slab = new Slab(rt, f, b);
            slabs.add(slab);
            off = 0;
            for (Tensor w : members) {
                placements.put(w, new Placement(slab, off, (int) w.dim(0), (int) w.dim(1)));
                off += (int) w.size();
            }
            i = j;
        }
    }

    private static void copyBf16(Tensor w, char[] dst, int off) {
        MemorySegment.copy(w.data(), U16, 0, dst, off, (int) w.size());
    }

    /**
     * Forgets these weights; a slab whose weights are all forgotten gives its device memory back. A forgotten weight
     * is converted and uploaded again if a later product reads it.
     */
    synchronized void evict(Collection<Tensor> weights) {
        for (Tensor w : weights) placements.remove(w);
        Set<Slab> live = Collections.newSetFromMap(new IdentityHashMap<>());
        for (Placement p : placements.values()) live.add(p.slab);
        slabs.removeIf(s -> {
            if (live.contains(s)) return false;
            s.kernel.dispose();
            return true;
        });
    }

    /** Weights and bytes now held for the device, for logs. */
    synchronized String describe() {
        long bytes = 0;
        for (Slab s : slabs) bytes += s.bf16 ? 2L * s.kernel.wBf16.length : 4L * s.kernel.wF32.length;
        return placements.size() + " weights in " + slabs.size() + " slabs, " + bytes / (1024 * 1024) + " MiB";
    }

    @Override
    public synchronized void close() {
        for (Slab s : slabs) s.kernel.dispose();
        slabs.clear();
        placements.clear();
    }

    static int ceilDiv(int a, int b) { return (a + b - 1) / b; }
}
