package io.lightmesh.engine.backend;

import io.lightmesh.engine.backend.opencl.OpenClException;
import io.lightmesh.engine.backend.opencl.OpenClOps;

import java.util.Locale;

/**
 * Picks the {@link TensorOps} implementation by name and logs the choice:
 * <ul>
 *   <li>{@code reference}: {@link ReferenceOps}, scalar Java;</li>
 *   <li>{@code vector}: {@link VectorOps}, the Vector API on all cores;</li>
 *   <li>{@code opencl}: {@link OpenClOps} on a GPU, else on a CPU device (PoCL); fails if neither works;</li>
 *   <li>{@code auto}: the fast one here: an OpenCL GPU, else vector. An OpenCL CPU device (PoCL) is never picked by
 *       {@code auto}: on CPUs it is 2-50x slower than the Vector API; {@code opencl} asks for it.</li>
 * </ul>
 * {@link #fromEnvironment()} reads the name from {@code -Dlightmesh.backend} or {@code LIGHTMESH_BACKEND}.
 */
public final class Backends {
    private static final System.Logger LOG = System.getLogger(Backends.class.getName());
    private Backends() {}

    /** The backend named by {@code -Dlightmesh.backend}, else {@code LIGHTMESH_BACKEND}, else {@code auto}. */
    public static TensorOps fromEnvironment() {
        String name = System.getProperty("lightmesh.backend");
        if (name == null) name = System.getenv("LIGHTMESH_BACKEND");
        return create(name == null || name.isBlank() ? "auto" : name);
    }

    /**
     * @param name auto, reference, vector or opencl (case-insensitive)
     * @throws IllegalArgumentException for an unknown name
     * @throws OpenClException for {@code opencl} when no OpenCL device works
     */
    public static TensorOps create(String name) {
        TensorOps ops = switch (name.trim().toLowerCase(Locale.ROOT)) {
            case "reference" -> new ReferenceOps();
            case "vector" -> new VectorOps();
            case "opencl" -> OpenClOps.create(OpenClOps.Preference.GPU_THEN_CPU);
            case "auto" -> auto();
            default -> throw new IllegalArgumentException(
                    "unknown backend '" + name + "' (expected auto, reference, vector or opencl)");
        };
        LOG.log(System.Logger.Level.INFO, "backend '" + name + "': " + describe(ops));
        return ops;
    }

    /** The backend for logs and reports: its name, and for OpenCL the device ("opencl on NVIDIA H200, GPU, ..."). */
    public static String describe(TensorOps ops) {
        return ops instanceof OpenClOps cl ? ops.name() + " on " + cl.device() : ops.name();
    }

    private static TensorOps auto() {
        TensorOps gpu = gpuOrNull();
        return gpu != null ? gpu : new VectorOps();
    }

    /** OpenCL on a GPU, or null (logged) when there is none. */
    public static TensorOps gpuOrNull() {
        try {
            return OpenClOps.create(OpenClOps.Preference.GPU_ONLY);
        } catch (OpenClException e) {
            LOG.log(System.Logger.Level.INFO, "auto backend: no OpenCL GPU (" + e.getMessage() + ")");
            return null;
        }
    }
}
