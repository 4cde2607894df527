package io.lightmesh.engine.backend.opencl;

/** Test access from other packages to ResidentOps' build-and-check of the tensor-core kernels. */
public final class TensorCoreTestHook {
    private TensorCoreTestHook() {}

    /** Builds tensorcore.cl with mma emulated in plain OpenCL C (-D TC_EMULATE); true when it passed the check. */
    public static boolean emulate(ResidentOps r) {
        TensorCores.Verdict v = r.tryTensorCores("#define TC_EMULATE\n" + TensorCores.source());
        if (!v.available()) System.out.println("emulated tensor cores: " + v);
        return v.available();
    }

    /** Drops the tensor-core kernels that {@link #emulate} built (products back on the fp32 GEMM). */
    public static void drop(ResidentOps r) { r.dropTensorCores(); }
}
