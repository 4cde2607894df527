package io.lightmesh.engine.backend.opencl;

import com.aparapi.device.Device;
import com.aparapi.device.OpenCLDevice;
import io.lightmesh.engine.backend.TensorOps;
import io.lightmesh.engine.tensor.Tensor;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;

/**
 * The OpenCL backend: weights resident on the device (fp32, or bf16 widened in the kernels), activations of the array
 * interface copied per call. Products run on the resident context's kernels ({@link ResidentOps}, which also runs
 * the device-resident decode step) unless that path is switched off; the prefill attention kernels run through
 * Aparapi. Kernels (math only) and launchers (buffers, ranges, transfers) sit side by side in
 * this package: {@link MatmulKernel}/{@link MatmulLauncher}, {@link LightningPrefillKernel} and
 * {@link LightningDecodeKernel}/{@link LightningLauncher}, {@link FlashAttentionKernel} and
 * {@link DecodeAttentionKernel}/{@link AttentionLauncher}.
 *
 * <p>Never runs slowly by accident: {@link #create} proves the device with a small product first, and every launch
 * fails with {@link OpenClException} if Aparapi did not run it through OpenCL on the chosen device.
 */
public final class OpenClOps implements TensorOps {
    private static final System.Logger LOG = System.getLogger(OpenClOps.class.getName());

    static {
        AparapiLogging.tame(); // before any Aparapi class: its configuration would silence every INFO line of the process
    }

    /** Which OpenCL devices {@link #create} may take, in order. */
    public enum Preference {
        /** A GPU if one works, else a CPU device (PoCL). */
        GPU_THEN_CPU,
        GPU_ONLY,
        CPU_ONLY
    }

    private final DeviceRuntime rt;
    private final MatmulLauncher matmul;
    private final LightningLauncher lightning;
    private final AttentionLauncher attention;
    /** Whether {@link #resident()} offers the resident decode path (default: yes; -Dlightmesh.opencl.resident=false). */
    private final boolean residentEnabled;
    private ResidentOps resident;

    private OpenClOps(DeviceRuntime rt, boolean residentEnabled) {
        this.rt = rt;
        this.residentEnabled = residentEnabled;
        this.matmul = new MatmulLauncher(rt);
        this.lightning = new LightningLauncher(rt);
        this.attention = new AttentionLauncher(rt);
    }

    /**
     * Opens the best device allowed by {@code preference} (GPUs before CPUs, then most compute units) that passes a
     * small matmul check, and logs it.
     *
     * @throws OpenClException when no OpenCL device is present or none works
     */
    public static OpenClOps create(Preference preference) {
        return create(preference, !"false".equalsIgnoreCase(System.getProperty("lightmesh.opencl.resident", "true")));
    }

    /**
     * As {@link #create(Preference)}; {@code resident} says whether the model may run decode through the
     * device-resident path ({@link #resident()}), or only through the array operations of {@link TensorOps}.
     */
    public static OpenClOps create(Preference preference, boolean resident) {
        List<OpenCLDevice> candidates = new ArrayList<>();
        if (preference != Preference.CPU_ONLY) candidates.addAll(devices(Device.TYPE.GPU));
        if (preference != Preference.GPU_ONLY) candidates.addAll(devices(Device.TYPE.CPU));
        if (candidates.isEmpty()) {
            throw new OpenClException("no OpenCL " + switch (preference) {
                case GPU_THEN_CPU -> "GPU or CPU";
                case GPU_ONLY -> "GPU";
                case CPU_ONLY -> "CPU";
            } + " device found (is an ICD installed, e.g. pocl-opencl-icd, or OCL_ICD_VENDORS set?)");
        }
        List<String> failures = new ArrayList<>();
        for (OpenCLDevice device : candidates) {
            DeviceRuntime rt = new DeviceRuntime(device);
            OpenClOps ops = new OpenClOps(rt, resident);
            try {
                ops.selfCheck();
                LOG.log(System.Logger.Level.INFO, "OpenCL backend on " + rt.describe());
                return ops;
            } catch (RuntimeException e) {
                failures.add(device.getName().trim() + ": " + e.getMessage());
                LOG.log(System.Logger.Level.WARNING, "OpenCL device " + device.getName().trim() + " failed its check", e);
                ops.close();
            }
        }
        throw new OpenClException("no OpenCL device passed the check: " + String.join("; ", failures));
    }

    private static List<OpenCLDevice> devices(Device.TYPE type) {
        try {
            List<OpenCLDevice> list = new ArrayList<>(OpenCLDevice.listDevices(type));
            list.sort(Comparator.comparingInt(OpenCLDevice::getMaxComputeUnits).reversed());
            return list;
        } catch (VirtualMachineError e) {
            throw e;
        } catch (Throwable e) {
            // Aparapi's native part cannot load libOpenCL.so.1, or the ICD loader found no platform.
            LOG.log(System.Logger.Level.DEBUG, "listing OpenCL " + type + " devices failed", e);
            return List.of();
        }
    }

    /** A 3 x 2 product through both matmul passes: cheap, and it compiles the kernel that every model needs. */
    private void selfCheck() {
        Tensor w = Tensor.ofFloats("opencl.selfcheck", new float[]{1, 2, 3, 4, 5, 6}, 3, 2);
        float[] x = new float[2 * 9];
        for (int i = 0; i < x.length; i++) x[i] = i % 2 == 0 ? 1f : -1f;
        float[] y = new float[3 * 9];
        matmul.matmul(x, 9, w, y);   // Aparapi's kernel: the self-check proves that Aparapi runs on this device
        float[] y1 = new float[3];
        matmul.matmul(x, 1, w, y1);
        matmul.evict(java.util.List.of(w));
        for (int t = 0; t < 9; t++) {
            for (int o = 0; o < 3; o++) {
                if (y[t * 3 + o] != -1f || (t == 0 && y1[o] != -1f)) {
                    throw new OpenClException("self-check product is wrong: got " + y[t * 3 + o] + " for -1");
                }
            }
        }
    }

    @Override
    public String name() { return "opencl"; }

    /** The device in use, for logs: name, type, compute units, local and global memory, platform. */
    public String device() { return rt.describe(); }

    /**
     * Runs on the resident context's kernels when this backend has one (its tiled GEMM uses vector loads that Aparapi
     * cannot emit, and the weights are then placed only once, there), else on Aparapi's {@link MatmulKernel}.
     */
    @Override
    public void matmul(float[] x, int n, Tensor w, float[] y) {
        ResidentOps r = resident();
        if (r != null) r.matmul(x, n, w, y);
        else matmul.matmul(x, n, w, y);
    }

    /** The product on Aparapi's kernels whatever the resident setting (tests and benchmarks of that path). */
    public void aparapiMatmul(float[] x, int n, Tensor w, float[] y) {
        matmul.matmul(x, n, w, y);
    }

    /**
     * Converts and packs these weights for the device now (uploaded with the first product that reads them), so
     * that a whole layer or model shares few slabs; weights first met by {@link #matmul} get a slab each.
     */
    @Override
    public void preload(Collection<Tensor> weights) {
        ResidentOps r = resident();
        if (r != null) r.preload(weights);
        else matmul.preload(weights);
    }

    /** Drops these weights from the device (for example a layer moved to another node); see {@link #preload}. */
    public void evict(Collection<Tensor> weights) {
        ResidentOps r;
        synchronized (this) { r = resident; }
        if (r != null) r.evict(weights);
        matmul.evict(weights);
    }

    @Override
    public void lightningPrefill(float[] q, float[] k, float[] v, int n, int heads, int headDim, float[] decay,
                                 int blockSize, float[] state, float[] out) {
        lightning.prefill(q, k, v, n, heads, headDim, decay, blockSize, state, out);
    }

    @Override
    public void lightningDecode(float[] q, float[] k, float[] v, int batch, int heads, int headDim, float[] decay,
                                float[][] states, float[] out) {
        lightning.decode(q, k, v, batch, heads, headDim, decay, states, out);
    }

    @Override
    public void softmaxAttention(float[] q, int n, int heads, int kvHeads, int headDim, float[] kCache, float[] vCache,
                                 int start, float[] out) {
        attention.attend(q, n, heads, kvHeads, headDim, kCache, vCache, start, out);
    }

    /**
     * Device time of all kernel executions so far, from OpenCL profiling events; 0 unless the JVM runs with
     * {@code -Dcom.aparapi.enableProfiling=true}. For benchmarks.
     */
    public long deviceKernelNanos() { return rt.kernelNanos(); }

    LightningLauncher lightningLauncher() { return lightning; }

    /** Kernel launches so far. */
    public long launches() { return rt.launches(); }

    /**
     * The device-resident operations (their own OpenCL context on this backend's device, opened on first use), or
     * null when this backend was created without them.
     */
    /** The cl_device_id of this backend's device. */
    long deviceId() { return rt.device().getDeviceId(); }

    @Override
    public synchronized ResidentOps resident() {
        if (!residentEnabled) return null;
        if (resident == null) resident = new ResidentOps(deviceId());
        return resident;
    }

    @Override
    public void close() {
        synchronized (this) {
            if (resident != null) resident.close();
            resident = null;
        }
        matmul.close();
        lightning.close();
        attention.close();
    }
}
