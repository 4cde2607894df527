package io.lightmesh.engine.backend.opencl;

import com.aparapi.Kernel;
import com.aparapi.ProfileInfo;
import com.aparapi.Range;
import com.aparapi.device.OpenCLDevice;
import com.aparapi.internal.kernel.KernelManager;

import java.util.LinkedHashSet;
import java.util.List;

/**
 * The chosen OpenCL device and the one way every launcher runs a kernel on it: pinned to that device, explicit
 * transfers only, and a loud failure (never Aparapi's silent Java fallback) if the kernel did not run through OpenCL.
 *
 * <p>With {@code -Dcom.aparapi.enableProfiling=true} it also sums the device time of every kernel execution (from
 * OpenCL profiling events), which {@code KernelBench} reports apart from the host-device copies.
 */
final class DeviceRuntime {
    static final boolean PROFILING = Boolean.getBoolean("com.aparapi.enableProfiling");

    private final OpenCLDevice device;
    private long kernelNanos;
    private long launches;

    DeviceRuntime(OpenCLDevice device) {
        this.device = device;
    }

    OpenCLDevice device() { return device; }

    String describe() {
        return device.getName().trim() + " (" + device.getType() + ", " + device.getMaxComputeUnits() + " compute units, "
                + device.getLocalMemSize() / 1024 + " KiB local memory, "
                + String.format("%.1f", device.getGlobalMemSize() / (1024.0 * 1024 * 1024)) + " GiB global memory, "
                + "platform " + device.getOpenCLPlatform().getName().trim() + ")";
    }

    /** Ties a new kernel to this device with explicit transfers: arrays move only on put/get. */
    <K extends Kernel> K adopt(K kernel) {
        kernel.setExplicit(true);
        KernelManager.instance().setPreferredDevices(kernel, new LinkedHashSet<>(List.of(device)));
        return kernel;
    }

    /** Runs {@code kernel} over a 1-D range and checks that OpenCL, on this device, ran it. */
    void launch(Kernel kernel, int globalSize, int localSize, String what) {
        Range range = Range.create(device, globalSize, localSize);
        try {
            kernel.execute(range);
        } catch (VirtualMachineError e) {
            throw e;
        } catch (Throwable e) {
            throw new OpenClException(what + " failed on OpenCL device " + device.getName().trim() + ": " + e, e);
        }
        if (!kernel.isRunningCL() || kernel.getTargetDevice() != device) {
            throw new OpenClException("Aparapi did not run " + what + " through OpenCL on " + device.getName().trim()
                    + " (it chose " + kernel.getTargetDevice().getShortDescription() + "); refusing its Java fallback");
        }
        launches++;
        if (PROFILING) {
            List<ProfileInfo> infos = kernel.getProfileInfo();
            if (infos != null) {
                for (ProfileInfo p : infos) {
                    if (p.getLabel() != null && p.getLabel().startsWith("exec")) kernelNanos += p.getEnd() - p.getStart();
                }
            }
        }
    }

    /** Device time of all kernel executions so far (0 unless profiling is on). */
    long kernelNanos() { return kernelNanos; }

    long launches() { return launches; }
}
