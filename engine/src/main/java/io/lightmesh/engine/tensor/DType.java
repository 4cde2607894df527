package io.lightmesh.engine.tensor;

/** Element types a checkpoint may hold. Compute is always fp32; these are storage types. */
public enum DType {
    F32(4), BF16(2), F16(2);

    private final int bytes;

    DType(int bytes) { this.bytes = bytes; }

    public int bytes() { return bytes; }

    /** The safetensors header spelling ("F32", "BF16", "F16"); anything else is rejected by name. */
    public static DType fromSafetensors(String name, String tensor) {
        return switch (name) {
            case "F32" -> F32;
            case "BF16" -> BF16;
            case "F16" -> F16;
            default -> throw new IllegalArgumentException(
                    "tensor " + tensor + ": unsupported dtype " + name + " (supported: F32, BF16, F16)");
        };
    }

    public String safetensorsName() { return name(); }
}
