package io.lightmesh.engine.backend;

/** Chooses the backend by name at start-up and logs the choice. (Interim: the OpenCL branch replaces this.) */
public final class Backends {
    private static final System.Logger LOG = System.getLogger(Backends.class.getName());

    private Backends() {}

    public static TensorOps create(String name) {
        TensorOps ops = switch (name) {
            case "reference" -> new ReferenceOps();
            case "auto", "vector" -> new VectorOps();
            default -> throw new IllegalArgumentException("unknown backend '" + name + "' (auto, reference, vector, opencl)");
        };
        LOG.log(System.Logger.Level.INFO, "backend: " + ops.name());
        return ops;
    }
}
