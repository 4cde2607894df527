package io.lightmesh.engine.backend.opencl;

/**
 * No usable OpenCL device, or a kernel that did not run through OpenCL. Thrown instead of letting Aparapi fall back
 * to its Java thread pool, which computes the same numbers a thousand times slower.
 */
public final class OpenClException extends RuntimeException {
    public OpenClException(String message) { super(message); }

    public OpenClException(String message, Throwable cause) { super(message, cause); }
}
