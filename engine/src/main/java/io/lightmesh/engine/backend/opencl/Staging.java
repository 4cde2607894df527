package io.lightmesh.engine.backend.opencl;

/**
 * Host arrays handed to Aparapi. Aparapi ties a device buffer to a Java array object and transfers whole arrays, so
 * a caller's array is used as is when its length is exactly what the kernel reads or writes (the usual case: engine
 * buffers sized to the step), and otherwise the needed prefix goes through a launcher-owned array of exact size,
 * reused while the size stays the same (decode steps), so the device buffer behind it is reused too.
 */
final class Staging {
    private float[] buffer = new float[1];

    /** An array of exactly {@code length} elements holding {@code src[0..length)}: src itself when it fits. */
    float[] in(float[] src, int length) {
        if (src.length == length) return src;
        float[] b = exact(length);
        System.arraycopy(src, 0, b, 0, length);
        return b;
    }

    /** An array of exactly {@code length} elements for the kernel to write; {@link #out} copies it back. */
    float[] outFor(float[] dst, int length) {
        return dst.length == length ? dst : exact(length);
    }

    /** Copies a staged result into {@code dst} (nothing when the kernel wrote dst itself). */
    static void out(float[] staged, float[] dst, int length) {
        if (staged != dst) System.arraycopy(staged, 0, dst, 0, length);
    }

    float[] exact(int length) {
        if (buffer.length != length) buffer = new float[Math.max(length, 1)];
        return buffer;
    }

    /**
     * Smallest device-only scratch array: 4M floats = 16 MiB, at least half of G1's largest region, so G1 allocates
     * it as a humongous object and does not move it between launches. That matters: Aparapi re-creates a buffer from
     * the host array when the array moved, which would silently replace data that lives only on the device between
     * the passes of one operation.
     */
    static final int DEVICE_ONLY_MIN = 4 << 20;

    /** A launcher-owned array of at least {@code length} elements whose contents live on the device only. */
    static float[] deviceOnly(float[] current, int length) {
        if (current != null && current.length >= length) return current;
        return new float[Math.max(length, DEVICE_ONLY_MIN)];
    }
}
