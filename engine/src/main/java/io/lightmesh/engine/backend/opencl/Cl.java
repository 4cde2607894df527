package io.lightmesh.engine.backend.opencl;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The few OpenCL C API calls the resident decode path needs, bound through the FFM API to the ICD loader
 * ({@code libOpenCL.so.1}). Aparapi cannot be used there: it gives every kernel instance its own OpenCL context, so no
 * buffer can be shared between two kernels, and it cannot express vector loads. Every call checks its error code and
 * throws {@link OpenClException} with the code's name.
 *
 * <p>Handles (cl_context, cl_mem, ...) are carried as {@link MemorySegment} addresses; {@code size_t} is 64-bit
 * (x86-64 and aarch64 Linux only).
 */
final class Cl {
    private Cl() {}

    static final long MEM_READ_WRITE = 1;
    static final int PROGRAM_BUILD_LOG = 0x1183;
    static final int DEVICE_NAME = 0x102B;
    static final int DEVICE_VENDOR = 0x102C;
    static final int DEVICE_MAX_COMPUTE_UNITS = 0x1002;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIB = SymbolLookup.libraryLookup("libOpenCL.so.1", Arena.global());

    private static MethodHandle fn(String name, MemoryLayout ret, MemoryLayout... args) {
        MemorySegment sym = LIB.find(name).orElseThrow(() -> new OpenClException("libOpenCL.so.1 has no " + name));
        return LINKER.downcallHandle(sym, ret == null ? FunctionDescriptor.ofVoid(args) : FunctionDescriptor.of(ret, args));
    }

    /**
     * A downcall that may take heap segments (Java arrays) as pointers: the array is pinned for the duration of the
     * call (as JNI's GetPrimitiveArrayCritical), so a blocking transfer reads or writes it in place, with no native
     * staging copy. Only for calls that do not keep the pointer past their return (blocking reads and writes).
     */
    private static MethodHandle critical(String name, MemoryLayout ret, MemoryLayout... args) {
        MemorySegment sym = LIB.find(name).orElseThrow(() -> new OpenClException("libOpenCL.so.1 has no " + name));
        return LINKER.downcallHandle(sym, FunctionDescriptor.of(ret, args), Linker.Option.critical(true));
    }

    private static final MethodHandle CREATE_CONTEXT = fn("clCreateContext", ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS);
    private static final MethodHandle CREATE_QUEUE = fn("clCreateCommandQueue", ADDRESS, ADDRESS, ADDRESS, JAVA_LONG, ADDRESS);
    private static final MethodHandle CREATE_BUFFER = fn("clCreateBuffer", ADDRESS, ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS, ADDRESS);
    private static final MethodHandle RELEASE_MEM = fn("clReleaseMemObject", JAVA_INT, ADDRESS);
    private static final MethodHandle CREATE_SUB_BUFFER = fn("clCreateSubBuffer", ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, ADDRESS, ADDRESS);
    private static final MethodHandle WRITE_BUFFER = fn("clEnqueueWriteBuffer", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, JAVA_LONG, JAVA_LONG, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
    private static final MethodHandle READ_BUFFER = fn("clEnqueueReadBuffer", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, JAVA_LONG, JAVA_LONG, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
    private static final MethodHandle WRITE_HEAP = critical("clEnqueueWriteBuffer", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, JAVA_LONG, JAVA_LONG, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
    private static final MethodHandle READ_HEAP = critical("clEnqueueReadBuffer", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, JAVA_LONG, JAVA_LONG, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
    private static final MethodHandle COPY_BUFFER = fn("clEnqueueCopyBuffer", JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, ADDRESS, ADDRESS);
    private static final MethodHandle CREATE_PROGRAM = fn("clCreateProgramWithSource", ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
    private static final MethodHandle BUILD_PROGRAM = fn("clBuildProgram", JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS);
    private static final MethodHandle BUILD_INFO = fn("clGetProgramBuildInfo", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, JAVA_LONG, ADDRESS, ADDRESS);
    private static final MethodHandle DEVICE_INFO = fn("clGetDeviceInfo", JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG, ADDRESS, ADDRESS);
    private static final MethodHandle CREATE_KERNEL = fn("clCreateKernel", ADDRESS, ADDRESS, ADDRESS, ADDRESS);
    private static final MethodHandle SET_ARG = fn("clSetKernelArg", JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG, ADDRESS);
    private static final MethodHandle ENQUEUE_ND = fn("clEnqueueNDRangeKernel", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
    private static final MethodHandle FINISH = fn("clFinish", JAVA_INT, ADDRESS);
    private static final MethodHandle EVENT_PROFILING = fn("clGetEventProfilingInfo", JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG, ADDRESS, ADDRESS);
    private static final MethodHandle RELEASE_EVENT = fn("clReleaseEvent", JAVA_INT, ADDRESS);
    private static final MethodHandle FLUSH = fn("clFlush", JAVA_INT, ADDRESS);
    private static final MethodHandle RELEASE_KERNEL = fn("clReleaseKernel", JAVA_INT, ADDRESS);
    private static final MethodHandle RELEASE_PROGRAM = fn("clReleaseProgram", JAVA_INT, ADDRESS);
    private static final MethodHandle RELEASE_QUEUE = fn("clReleaseCommandQueue", JAVA_INT, ADDRESS);
    private static final MethodHandle RELEASE_CONTEXT = fn("clReleaseContext", JAVA_INT, ADDRESS);

    static MemorySegment createContext(MemorySegment device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment devs = a.allocate(ADDRESS);
            devs.set(ADDRESS, 0, device);
            MemorySegment err = a.allocate(JAVA_INT);
            MemorySegment ctx = (MemorySegment) CREATE_CONTEXT.invokeExact(MemorySegment.NULL, 1, devs,
                    MemorySegment.NULL, MemorySegment.NULL, err);
            check(err.get(JAVA_INT, 0), "clCreateContext");
            return ctx;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static final long QUEUE_PROFILING_ENABLE = 1L << 1;
    static final int PROFILING_COMMAND_START = 0x1282;
    static final int PROFILING_COMMAND_END = 0x1283;

    static MemorySegment createQueue(MemorySegment ctx, MemorySegment device) { return createQueue(ctx, device, false); }

    /** An in-order queue; {@code profiling}: with CL_QUEUE_PROFILING_ENABLE, so launches' events carry device times. */
    static MemorySegment createQueue(MemorySegment ctx, MemorySegment device, boolean profiling) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment err = a.allocate(JAVA_INT);
            MemorySegment q = (MemorySegment) CREATE_QUEUE.invokeExact(ctx, device,
                    profiling ? QUEUE_PROFILING_ENABLE : 0L, err);
            check(err.get(JAVA_INT, 0), "clCreateCommandQueue");
            return q;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static MemorySegment createBuffer(MemorySegment ctx, long bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment err = a.allocate(JAVA_INT);
            MemorySegment m = (MemorySegment) CREATE_BUFFER.invokeExact(ctx, MEM_READ_WRITE, Math.max(bytes, 4L),
                    MemorySegment.NULL, err);
            check(err.get(JAVA_INT, 0), "clCreateBuffer(" + bytes + " bytes)");
            return m;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static final int BUFFER_CREATE_TYPE_REGION = 0x1220;
    static final int DEVICE_MEM_BASE_ADDR_ALIGN = 0x1019;

    /** A view of bytes [origin, origin + bytes) of {@code parent} (origin a multiple of {@link #baseAlignBytes}). */
    static MemorySegment createSubBuffer(MemorySegment parent, long origin, long bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment region = a.allocate(16, 8);
            region.set(JAVA_LONG, 0, origin);
            region.set(JAVA_LONG, 8, bytes);
            MemorySegment err = a.allocate(JAVA_INT);
            MemorySegment m = (MemorySegment) CREATE_SUB_BUFFER.invokeExact(parent, MEM_READ_WRITE,
                    BUFFER_CREATE_TYPE_REGION, region, err);
            check(err.get(JAVA_INT, 0), "clCreateSubBuffer(" + origin + ", " + bytes + ")");
            return m;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes: the alignment a sub-buffer's origin needs. */
    static int baseAlignBytes(MemorySegment device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(JAVA_INT);
            check((int) DEVICE_INFO.invokeExact(device, DEVICE_MEM_BASE_ADDR_ALIGN, 4L, buf, MemorySegment.NULL), "clGetDeviceInfo");
            return Math.max(1, buf.get(JAVA_INT, 0) / 8);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static void releaseMem(MemorySegment m) {
        try {
            check((int) RELEASE_MEM.invokeExact(m), "clReleaseMemObject");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Blocking write of {@code bytes} from host memory {@code src} (native memory, or a Java array's segment, which
     * is pinned for the call rather than copied) to {@code dst} at byte offset {@code off}.
     */
    static void write(MemorySegment queue, MemorySegment dst, long off, long bytes, MemorySegment src) {
        MethodHandle h = src.isNative() ? WRITE_BUFFER : WRITE_HEAP;
        try {
            check((int) h.invokeExact(queue, dst, 1, off, bytes, src, 0, MemorySegment.NULL, MemorySegment.NULL),
                    "clEnqueueWriteBuffer");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Non-blocking write of {@code bytes} from native memory {@code src}, which must stay valid until the transfer is
     * done (the queue's next sync).
     */
    static void writeAsync(MemorySegment queue, MemorySegment dst, long off, long bytes, MemorySegment src) {
        if (!src.isNative()) throw new IllegalArgumentException("a non-blocking write needs native memory");
        try {
            check((int) WRITE_BUFFER.invokeExact(queue, dst, 0, off, bytes, src, 0, MemorySegment.NULL, MemorySegment.NULL),
                    "clEnqueueWriteBuffer");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Blocking read (waits for every command before it on the in-order queue) into {@code dst}: native memory, or a
     * Java array's segment, pinned for the call.
     */
    static void read(MemorySegment queue, MemorySegment src, long off, long bytes, MemorySegment dst) {
        MethodHandle h = dst.isNative() ? READ_BUFFER : READ_HEAP;
        try {
            check((int) h.invokeExact(queue, src, 1, off, bytes, dst, 0, MemorySegment.NULL, MemorySegment.NULL),
                    "clEnqueueReadBuffer");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static void copy(MemorySegment queue, MemorySegment src, MemorySegment dst, long srcOff, long dstOff, long bytes) {
        try {
            check((int) COPY_BUFFER.invokeExact(queue, src, dst, srcOff, dstOff, bytes, 0, MemorySegment.NULL,
                    MemorySegment.NULL), "clEnqueueCopyBuffer");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Compiles {@code source} for {@code device}; a failed build throws with the compiler's log. */
    static MemorySegment buildProgram(MemorySegment ctx, MemorySegment device, String source, String options) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment err = a.allocate(JAVA_INT);
            MemorySegment strings = a.allocate(ADDRESS);
            strings.set(ADDRESS, 0, a.allocateFrom(source));
            MemorySegment prog = (MemorySegment) CREATE_PROGRAM.invokeExact(ctx, 1, strings, MemorySegment.NULL, err);
            check(err.get(JAVA_INT, 0), "clCreateProgramWithSource");
            MemorySegment devs = a.allocate(ADDRESS);
            devs.set(ADDRESS, 0, device);
            int rc = (int) BUILD_PROGRAM.invokeExact(prog, 1, devs, a.allocateFrom(options), MemorySegment.NULL, MemorySegment.NULL);
            if (rc != 0) throw new OpenClException("clBuildProgram failed (" + name(rc) + "):\n" + buildLog(prog, device));
            String logTo = System.getProperty("lightmesh.opencl.buildLog"); // with -cl-nv-verbose: registers per kernel
            if (logTo != null) {
                String log = "OpenCL build log (" + options + "):\n" + buildLog(prog, device);
                if (logTo.equals("true")) System.err.println(log);
                else java.nio.file.Files.writeString(java.nio.file.Path.of(logTo), log);
            }
            return prog;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private static String buildLog(MemorySegment prog, MemorySegment device) throws Throwable {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment size = a.allocate(JAVA_LONG);
            if ((int) BUILD_INFO.invokeExact(prog, device, PROGRAM_BUILD_LOG, 0L, MemorySegment.NULL, size) != 0) return "";
            MemorySegment buf = a.allocate(size.get(JAVA_LONG, 0) + 1);
            if ((int) BUILD_INFO.invokeExact(prog, device, PROGRAM_BUILD_LOG, buf.byteSize(), buf, MemorySegment.NULL) != 0) return "";
            return buf.getString(0);
        }
    }

    static String deviceName(MemorySegment device) { return deviceString(device, DEVICE_NAME); }

    static String deviceVendor(MemorySegment device) { return deviceString(device, DEVICE_VENDOR); }

    private static String deviceString(MemorySegment device, int param) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(256);
            check((int) DEVICE_INFO.invokeExact(device, param, 256L, buf, MemorySegment.NULL), "clGetDeviceInfo");
            return buf.getString(0).trim();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int computeUnits(MemorySegment device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(JAVA_INT);
            check((int) DEVICE_INFO.invokeExact(device, DEVICE_MAX_COMPUTE_UNITS, 4L, buf, MemorySegment.NULL), "clGetDeviceInfo");
            return buf.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static MemorySegment createKernel(MemorySegment program, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment err = a.allocate(JAVA_INT);
            MemorySegment k = (MemorySegment) CREATE_KERNEL.invokeExact(program, a.allocateFrom(name), err);
            check(err.get(JAVA_INT, 0), "clCreateKernel(" + name + ")");
            return k;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Sets argument {@code index} to the {@code size} bytes at {@code value}. */
    static void setArg(MemorySegment kernel, int index, long size, MemorySegment value) {
        try {
            check((int) SET_ARG.invokeExact(kernel, index, size, value), "clSetKernelArg(" + index + ")");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** A 1-D launch; {@code sizes} holds global then local size as two size_t. */
    static void enqueue(MemorySegment queue, MemorySegment kernel, MemorySegment global, MemorySegment local, String what) {
        enqueue(queue, kernel, global, local, what, MemorySegment.NULL);
    }

    /** As {@link #enqueue}, the launch's cl_event stored at {@code event} (a pointer's room) unless that is NULL. */
    static void enqueue(MemorySegment queue, MemorySegment kernel, MemorySegment global, MemorySegment local, String what,
                        MemorySegment event) {
        try {
            int rc = (int) ENQUEUE_ND.invokeExact(queue, kernel, 1, MemorySegment.NULL, global, local, 0, MemorySegment.NULL,
                    event);
            if (rc != 0) check(rc, "clEnqueueNDRangeKernel(" + what + ")"); // the message only on failure: hot path
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * The device clock (ns) at which the event's command started and ended, into {@code startEnd[0..1]}; the queue must
     * have been made with profiling and the command be complete. {@code scratch}: 8 bytes of room.
     */
    static void eventTimes(MemorySegment event, MemorySegment scratch, long[] startEnd) {
        try {
            check((int) EVENT_PROFILING.invokeExact(event, PROFILING_COMMAND_START, 8L, scratch, MemorySegment.NULL),
                    "clGetEventProfilingInfo(START)");
            startEnd[0] = scratch.get(JAVA_LONG, 0);
            check((int) EVENT_PROFILING.invokeExact(event, PROFILING_COMMAND_END, 8L, scratch, MemorySegment.NULL),
                    "clGetEventProfilingInfo(END)");
            startEnd[1] = scratch.get(JAVA_LONG, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static void releaseEvent(MemorySegment e) { release(RELEASE_EVENT, e, "clReleaseEvent"); }

    static void finish(MemorySegment queue) {
        try {
            check((int) FINISH.invokeExact(queue), "clFinish");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Submits what is enqueued to the device without waiting for it (drivers may otherwise hold commands back). */
    static void flush(MemorySegment queue) {
        try {
            check((int) FLUSH.invokeExact(queue), "clFlush");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static void releaseKernel(MemorySegment k) { release(RELEASE_KERNEL, k, "clReleaseKernel"); }
    static void releaseProgram(MemorySegment p) { release(RELEASE_PROGRAM, p, "clReleaseProgram"); }
    static void releaseQueue(MemorySegment q) { release(RELEASE_QUEUE, q, "clReleaseCommandQueue"); }
    static void releaseContext(MemorySegment c) { release(RELEASE_CONTEXT, c, "clReleaseContext"); }

    private static void release(MethodHandle h, MemorySegment handle, String what) {
        try {
            check((int) h.invokeExact(handle), what);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static void check(int rc, String what) {
        if (rc != 0) throw new OpenClException(what + " failed: " + name(rc));
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new OpenClException("OpenCL call failed: " + t, t);
    }

    /** The name of an OpenCL error code, for messages. */
    static String name(int rc) {
        return switch (rc) {
            case -1 -> "CL_DEVICE_NOT_FOUND";
            case -2 -> "CL_DEVICE_NOT_AVAILABLE";
            case -4 -> "CL_MEM_OBJECT_ALLOCATION_FAILURE";
            case -5 -> "CL_OUT_OF_RESOURCES";
            case -6 -> "CL_OUT_OF_HOST_MEMORY";
            case -11 -> "CL_BUILD_PROGRAM_FAILURE";
            case -30 -> "CL_INVALID_VALUE";
            case -33 -> "CL_INVALID_DEVICE";
            case -34 -> "CL_INVALID_CONTEXT";
            case -36 -> "CL_INVALID_COMMAND_QUEUE";
            case -38 -> "CL_INVALID_MEM_OBJECT";
            case -46 -> "CL_INVALID_KERNEL_NAME";
            case -48 -> "CL_INVALID_KERNEL";
            case -49 -> "CL_INVALID_ARG_INDEX";
            case -50 -> "CL_INVALID_ARG_VALUE";
            case -51 -> "CL_INVALID_ARG_SIZE";
            case -52 -> "CL_INVALID_KERNEL_ARGS";
            case -54 -> "CL_INVALID_WORK_GROUP_SIZE";
            case -55 -> "CL_INVALID_WORK_ITEM_SIZE";
            case -61 -> "CL_INVALID_BUFFER_SIZE";
            case -63 -> "CL_INVALID_GLOBAL_WORK_SIZE";
            default -> "OpenCL error " + rc;
        };
    }

    static final ValueLayout.OfLong SIZE_T = JAVA_LONG;
}
