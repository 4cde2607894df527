package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.DeviceOps;
import io.lightmesh.engine.tensor.DType;
import io.lightmesh.engine.tensor.Tensor;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The launchers of the device-resident decode path: one OpenCL context and in-order queue on the backend's device,
 * bound directly through {@link Cl} (not Aparapi, whose per-kernel contexts cannot share buffers), the kernels of
 * {@code resident.cl}, the weights placed once, and every {@link DeviceOps} operation as one or a few launches.
 *
 * <p>Weights: each {@link Tensor} (by identity) becomes one device buffer, fp32 or raw bf16 (f16 is widened to fp32
 * on the way), uploaded on first use or at {@link #preload}; a layer's experts are stacked [E, rows, cols] so a
 * kernel can address an expert by the id the router wrote on the device.
 *
 * <p>Thread safety: every method is synchronized (kernel arguments are per-kernel state in OpenCL).
 */
public final class ResidentOps implements DeviceOps, AutoCloseable {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long UPLOAD_CHUNK = 64L << 20;

    static final int NT = 256;
    static final int MV_ROWS = 4;
    static final int MAXN = 8;
    static final int DA_KEYS = 32, DA_MAXD = 128, DA_MAXG = 16, DB_G = 8;
    static final int GM = 128, GN = 128;
    /**
     * From this many rows a product runs as the tiled GEMM: below it, passes of 8 rows of the matrix-vector kernel
     * (each reading the weight once) cost less than a 128-row tile that is mostly empty.
     */
    static final int GEMM_MIN_ROWS = 33;
    static final int LS_COLS = 64;
    static final int LS_SLICES = NT / LS_COLS;
    /** Rows a work-group of the v2 matrix-vector kernels: one a lane group of 32 (resident.cl's WG). */
    static final int WG = NT / 32;

    /**
     * -Dlightmesh.decode.kernels=v2 (the default) or v1: the decode kernels the fused step's split form and the
     * matrix-vector products of few rows use (resident.cl's "decode kernels v2", or the ones before them).
     */
    static final boolean V2_DEFAULT = v2Setting(System.getProperty("lightmesh.decode.kernels", "v2"));

    /**
     * -Dlightmesh.decode.kernels=v3 (off by default): decode_v3.cl's products (matrix-vector, the fused step's
     * projections, the experts' gate/up and down, bf16 weights) and its one-pass norm + router, over v2 for the rest;
     * built as a program of its own and checked against v2 at first use, v2 where either fails (logged).
     */
    static final boolean V3_DEFAULT = v3Setting(System.getProperty("lightmesh.decode.kernels", "v2"));

    static boolean v2Setting(String v) {
        return switch (v.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "v2", "v3" -> true;
            case "v1" -> false;
            default -> throw new IllegalArgumentException("-Dlightmesh.decode.kernels takes v1, v2 or v3, got '" + v + "'");
        };
    }

    static boolean v3Setting(String v) {
        return v2Setting(v) && "v3".equals(v.trim().toLowerCase(java.util.Locale.ROOT));
    }

    private boolean v2 = V2_DEFAULT;

    /** Whether the v3 kernels run now: asked for, and decode_v3.cl built and passed its check. */
    private boolean v3;

    /** decode_v3.cl's program once built and checked (null before the first try, or where it failed: v3WhyNot). */
    private MemorySegment v3Program;
    private boolean v3Tried;
    private String v3WhyNot = "not tried";
    /** Whether decode_v3.cl's fused forms (d3_out_route, d3_down_norm, d3_proj_light) built; why not. */
    private boolean v3Fused;
    private String v3FusedWhyNot;

    /**
     * -Dlightmesh.decode.v3.rows=auto (the default), 1, 2 or 4: weight rows a lane group of the v3 products streams
     * together (auto: 2 for rows of 2048+ elements, 4 below, 1 for gate and up, which stream two weights already).
     */
    static final int V3_ROWS_DEFAULT = v3RowsSetting(System.getProperty("lightmesh.decode.v3.rows", "auto"));

    static int v3RowsSetting(String v) {
        return switch (v.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "auto", "0" -> 0;
            case "1" -> 1;
            case "2" -> 2;
            case "4" -> 4;
            default -> throw new IllegalArgumentException("-Dlightmesh.decode.v3.rows takes auto, 1, 2 or 4, got '" + v + "'");
        };
    }

    private int v3Rows = V3_ROWS_DEFAULT;

    /**
     * -Dlightmesh.decode.v3.tails=true (the default within v3) or false: with the v3 kernels, the fused step's output
     * projection carries the norm and the router (d3_out_route) and the experts' down projection the residual and the
     * next norm (d3_down_norm) in their last work-group, five launches a layer instead of seven.
     */
    static final boolean V3_TAILS_DEFAULT = Boolean.parseBoolean(System.getProperty("lightmesh.decode.v3.tails", "true").trim());

    private boolean v3Tails = V3_TAILS_DEFAULT;

    /** Chooses whether the v3 step carries its tails (null: the setting's); returns the choice now. */
    public synchronized boolean decodeV3Tails(Boolean on) {
        v3Tails = on == null ? V3_TAILS_DEFAULT : on;
        return v3Tails;
    }

    /**
     * -Dlightmesh.decode.v3.lightning=true (the default within v3) or false: with the v3 kernels, a lightning layer of a
     * one-row step is one launch (d3_proj_light: the projections, each head's step in the last group of its rows, the
     * norm and gate in the last group of all).
     */
    static final boolean V3_LIGHTNING_DEFAULT =
            Boolean.parseBoolean(System.getProperty("lightmesh.decode.v3.lightning", "true").trim());

    private boolean v3Lightning = V3_LIGHTNING_DEFAULT;

    /** Chooses whether a one-row v3 step runs a lightning layer in one launch (null: the setting's); the choice now. */
    public synchronized boolean decodeV3Lightning(Boolean on) {
        v3Lightning = on == null ? V3_LIGHTNING_DEFAULT : on;
        return v3Lightning;
    }

    /** Whether a one-row v3 step runs its lightning layers in one launch now. */
    boolean v3Lightning() { return v3 && v3Fused && v3Lightning; }

    /** Whether the v3 step's output and down projections carry their tails now. */
    boolean v3Tails() { return v3 && v3Fused && v3Tails; }

    /** Chooses the v3 products' rows a lane group (0: auto, 1, 2, 4; -1: the setting's); returns the choice now. */
    public synchronized int decodeV3Rows(int r) {
        v3Rows = r < 0 ? V3_ROWS_DEFAULT : v3RowsSetting(Integer.toString(r));
        return v3Rows;
    }

    /**
     * The v3 kernel name for a product of rows of {@code in} elements over n x rows ({@code base} "d3_matvec",
     * "d3_proj", "d3_projr", "d3_down" or "d3_gate_up"): the n1 form at one row, else n8; rows a lane group as set.
     */
    String v3Kernel(String base, int n, int in) {
        int r = v3Rows;
        boolean gateUp = base.equals("d3_gate_up");
        if (r == 0) r = gateUp ? 1 : in >= 2048 ? 2 : 4;
        if (gateUp) r = Math.min(r, 2);
        return base + "_n" + (n == 1 ? 1 : MAXN) + "_r" + r;
    }

    /** Rows a work-group of v3 kernel {@code name} (WG lane groups of its rows each). */
    static int v3GroupRows(String name) { return WG * (name.charAt(name.length() - 1) - '0'); }

    /** Whether the v3 kernels run now (tests, benchmarks, the fused launcher). */
    boolean v3() { return v3; }

    /**
     * -Dlightmesh.decode.warpRows=1 (the default) or 2: weight rows a lane group of the v2 matrix-vector kernels streams
     * together (2: each x chunk is loaded once for two rows, half the cache traffic at 8 rows of x; the *2x2_ kernels).
     */
    static final int WARP_ROWS_DEFAULT = warpRowsSetting(System.getProperty("lightmesh.decode.warpRows", "1"));

    static int warpRowsSetting(String v) {
        return switch (v.trim()) {
            case "1" -> 1;
            case "2" -> 2;
            default -> throw new IllegalArgumentException("-Dlightmesh.decode.warpRows takes 1 or 2, got '" + v + "'");
        };
    }

    private int warpRows = WARP_ROWS_DEFAULT;

    /** Chooses the v2 kernels' rows a lane group, 1 or 2 (0: the setting's); returns the choice now. Tests, benchmarks. */
    public synchronized int decodeWarpRows(int r) {
        warpRows = r == 0 ? WARP_ROWS_DEFAULT : warpRowsSetting(Integer.toString(r));
        FusedOps f = (FusedOps) fused();
        if (f != null) f.warpRows(warpRows);
        return warpRows;
    }

    /** The v2 matrix-vector kernels' name part for the rows a lane group: "" (1) or "x2" (2). */
    static String rowsTag(int warpRows) { return warpRows == 2 ? "x2" : ""; }

    /**
     * Chooses the decode kernels, "v1" or "v2" (null: the setting's, -Dlightmesh.decode.kernels), for the
     * matrix-vector products and the fused step (tests, benchmarks); returns the choice now.
     */
    public synchronized String decodeKernels(String v) {
        v2 = v == null ? V2_DEFAULT : v2Setting(v);
        v3 = (v == null ? V3_DEFAULT : v3Setting(v)) && v3Ready();
        FusedOps f = (FusedOps) fused();
        if (f != null) f.kernels(v2);
        return v3 ? "v3" : v2 ? "v2" : "v1";
    }

    /** Why the v3 kernels do not run where asked for (null when they built and passed the check). */
    public synchronized String v3WhyNot() { return v3Ready() ? null : v3WhyNot; }

    /**
     * Builds decode_v3.cl (on NVIDIA with LM_NVIDIA, then the portable form) and checks its matrix-vector forms against
     * v2's on a ragged product, once; true when the program is there and agreed.
     */
    private boolean v3Ready() {
        if (v3Tried) return v3Program != null;
        v3Tried = true;
        String src = resource("decode_v3.cl");
        MemorySegment p = null;
        String firstLog = null;
        // in falling order of what a compiler has to accept: NVIDIA's fence and shuffle, with and without the fused
        // forms (tails, the one-launch lightning layer), then the portable source the same two ways
        boolean nv = TensorCores.nvidia(Cl.deviceVendor(device));
        String[][] attempts = {
                {options + " -D LM_NVIDIA=1", "nvidia"}, {options + " -D LM_NVIDIA=1 -D D3_NO_FUSED=1", "nvidia, no fused"},
                {options, "portable"}, {options + " -D D3_NO_FUSED=1", "portable, no fused"}};
        for (String[] a : attempts) {
            if (!nv && a[1].startsWith("nvidia")) continue;
            try {
                p = Cl.buildProgram(context, device, src, a[0]);
            } catch (RuntimeException e) {
                String log = String.valueOf(e.getMessage());
                if (firstLog == null) firstLog = log;
                LOG.log(System.Logger.Level.WARNING, "decode_v3.cl (" + a[1] + ") did not build: " + clip(log, 400));
                continue;
            }
            v3Fused = !a[1].endsWith("no fused");
            if (!v3Fused) v3FusedWhyNot = "the fused forms did not build: " + clip(firstLog, 300);
            break;
        }
        if (p == null) {
            v3WhyNot = "decode_v3.cl did not build: " + clip(firstLog, 600);
            LOG.log(System.Logger.Level.WARNING, "decode kernels v3 off, v2 instead: " + v3WhyNot);
            return false;
        }
        v3Program = p;
        String bad = checkV3();
        if (bad != null) {
            v3WhyNot = bad;
            LOG.log(System.Logger.Level.WARNING, "decode kernels v3 off, v2 instead: " + bad);
            kernels.entrySet().removeIf(en -> {
                if (!en.getKey().startsWith("d3_")) return false;
                Cl.releaseKernel(en.getValue());
                return true;
            });
            Cl.releaseProgram(v3Program);
            v3Program = null;
            return false;
        }
        v3WhyNot = null;
        return true;
    }

    /** Builds decode_v3.cl with {@code defines} added and releases it: null when it built, else the log (tests). */
    synchronized String v3BuildLog(String defines) {
        try {
            Cl.releaseProgram(Cl.buildProgram(context, device, resource("decode_v3.cl"), options + " " + defines));
            return null;
        } catch (RuntimeException e) {
            return String.valueOf(e.getMessage());
        }
    }

    /** Every d3_matvec form against matvec2 on a product of 37 rows of 2056 (each loop of the dot), 1 and 5 rows of x. */
    private String checkV3() {
        int out = 37, in = 2056, n = 5;
        java.util.Random rnd = new java.util.Random(16);
        float[] x = new float[n * in];
        for (int i = 0; i < x.length; i++) x[i] = rnd.nextFloat() * 2 - 1;
        short[] bits = new short[out * in];
        for (int i = 0; i < bits.length; i++) bits[i] = (short) (Float.floatToRawIntBits(rnd.nextFloat() * 2 - 1) >>> 16);
        ClBuffer bx = floats((long) n * in), by = floats((long) n * out), wb = shorts((long) out * in);
        try {
            write(bx, 0, x, 0, x.length);
            Cl.write(queue, wb.mem(), 0, 2L * bits.length, MemorySegment.ofArray(bits));
            for (int rows : new int[]{1, n}) {
                float[] want = new float[rows * out];
                launch("matvec2_bf16v", (long) ceilDiv(out, WG) * NT, wb, 0L, bx, 0L, by, 0L, rows, in, out);
                read(by, 0, want, 0, want.length);
                double scale = 0;
                for (float v : want) scale = Math.max(scale, Math.abs(v));
                for (int r : new int[]{1, 2, 4}) {
                    String k = "d3_matvec_n" + (rows == 1 ? 1 : MAXN) + "_r" + r;
                    float[] got = new float[rows * out];
                    java.util.Arrays.fill(got, Float.NaN);
                    write(by, 0, got, 0, got.length);
                    launch(k, (long) ceilDiv(out, WG * r) * NT, wb, 0L, bx, 0L, by, 0L, rows, in, out);
                    read(by, 0, got, 0, got.length);
                    for (int i = 0; i < got.length; i++) {
                        if (!(Math.abs(got[i] - want[i]) <= 1e-4 * Math.max(1, scale))) {
                            return k + " disagrees with matvec2_bf16v at " + i + ": " + got[i] + " vs " + want[i];
                        }
                    }
                }
            }
            return null;
        } catch (RuntimeException e) {
            return "decode_v3.cl's check failed: " + clip(String.valueOf(e.getMessage()), 400);
        } finally {
            bx.close();
            by.close();
            wb.close();
        }
    }
    static final int ROUTE_MAX_EXPERTS = 64;

    /** A device buffer; closing it twice, or after the context, does nothing. */
    final class ClBuffer implements Buffer {
        private MemorySegment mem;
        private final long length, bytes;

        private ClBuffer(long length, int elemBytes) {
            this(length, length * elemBytes, Cl.createBuffer(context, length * elemBytes));
        }

        /** A buffer over {@code mem} (made by the caller: a sub-buffer), released with it. */
        private ClBuffer(long length, MemorySegment mem) {
            this(length, 0, mem); // a view: its bytes are counted in the buffer it views
        }

        private ClBuffer(long length, long bytes, MemorySegment mem) {
            this.length = length;
            this.bytes = bytes;
            this.mem = mem;
            live.add(this);
        }

        @Override
        public long length() { return length; }

        MemorySegment mem() {
            if (mem == null) throw new IllegalStateException("device buffer used after close");
            return mem;
        }

        @Override
        public void close() {
            synchronized (ResidentOps.this) {
                if (mem == null) return;
                Cl.releaseMem(mem);
                mem = null;
                live.remove(this);
            }
        }
    }

    /** Bytes of every device buffer allocated through this object and not yet closed (weights, scratch, caches). */
    public synchronized long deviceBytes() {
        long b = 0;
        for (ClBuffer c : live) b += c.bytes;
        return b;
    }

    /** A weight on the device: [rows, cols] (or [E, rows, cols] stacked experts), fp32 or raw bf16. */
    record Weight(ClBuffer buf, boolean bf16, int rows, int cols) {}

    record Experts(Weight w1, Weight w3, Weight w2, int count) implements ExpertSet {}

    private final MemorySegment device;
    private final MemorySegment context;
    private final MemorySegment queue;
    private final MemorySegment program;
    /** tensorcore.cl, built where the probe tried it and kept where the check passed; else null. */
    private MemorySegment tcProgram;
    private final Map<String, MemorySegment> tcKernels = new HashMap<>();
    private final TensorCores.Verdict tensorCores;
    private boolean useTensorCores;
    /** The GEMM of bf16-weight products on tensor cores now (v1 or a v2 form the probe checked). */
    private TensorCores.Gemm gemm = TensorCores.V1;
    /** The GEMM forms that built and passed the check (v1 first), in the order of {@link TensorCores#V2}. */
    private final List<TensorCores.Gemm> gemmsChecked = new ArrayList<>();
    /** bf16 copy of a v2 product's activations (to_bf16), kept between products. */
    private ClBuffer xBf16;
    /** Whether tcProgram holds the grouped expert kernels (experts_tc.cl) and they passed their check; why not. */
    private boolean tcGrouped;
    private String tcGroupedWhyNot = "tensor cores off";
    /** Whether the second tensor-core form of the grouped kernels (v2: cp.async, ldmatrix) passed its check; why not. */
    private boolean tcGroupedV2;
    private String tcGroupedV2WhyNot = "tensor cores off";
    /** -Dlightmesh.experts.tc=v1: the grouped kernels' first tensor-core form even where v2 passed (to compare). */
    private boolean groupedV2Wanted = !"v1".equalsIgnoreCase(System.getProperty("lightmesh.experts.tc", "v2").trim());
    private final String options;
    private final String name;
    private final int computeUnits;
    private final long viewAlign; // elements
    private FusedOps fused;
    private final Map<String, MemorySegment> kernels = new HashMap<>();
    private final Map<Tensor, Weight> weights = new IdentityHashMap<>();
    private final Set<ClBuffer> live = Collections.newSetFromMap(new IdentityHashMap<>());
    private final Arena arena = Arena.ofShared();
    private final MemorySegment argValue = arena.allocate(8, 8);
    private final MemorySegment globalSize = arena.allocate(8, 8);
    private final MemorySegment localSize = arena.allocate(8, 8);
    private ClBuffer attnPart;
    private boolean closed;

    /** Opens a context on the OpenCL device {@code deviceId} (a cl_device_id, as Aparapi reports it). */
    public ResidentOps(long deviceId) { this(deviceId, System.getProperty("lightmesh.opencl.profile", "false")); }

    /** As {@link #ResidentOps(long)} with the profile mode {@code profile}: "false", "true" or "events" (tests). */
    ResidentOps(long deviceId, String profile) {
        switch (profile.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "false", "" -> { profileSync = false; profileEvents = false; }
            case "true" -> { profileSync = true; profileEvents = false; }
            case "events" -> { profileSync = false; profileEvents = true; }
            default -> throw new IllegalArgumentException("-Dlightmesh.opencl.profile takes false, true or events, got '"
                    + profile + "'");
        }
        this.device = MemorySegment.ofAddress(deviceId);
        this.context = Cl.createContext(device);
        this.queue = Cl.createQueue(context, device, profileEvents);
        // -Dlightmesh.opencl.options=-cl-nv-verbose (with -Dlightmesh.opencl.buildLog=true): NVIDIA's register counts
        this.options = System.getProperty("lightmesh.opencl.options", "");
        // LM_NVIDIA: the fused decode kernels' device-wide fence as PTX membar.gl (NVIDIA's mem_fence may stop at the SM)
        this.program = buildResident(context, device, options);
        this.viewAlign = Math.max(4, Cl.baseAlignBytes(device)) / 4;
        this.name = Cl.deviceName(device);
        this.computeUnits = Math.max(1, Cl.computeUnits(device));
        this.tensorCores = probeTensorCores();
        this.v3 = V3_DEFAULT && v3Ready();
        this.useTensorCores = tensorCores.available();
        probeDecodeTc();
        LOG.log(System.Logger.Level.INFO, "OpenCL products of " + GEMM_MIN_ROWS + "+ rows on " + name + ": "
                + (useTensorCores ? "bf16 tensor cores (mma.sync)" : "fp32 GEMM") + "; tensor cores " + tensorCores
                + "; grouped experts " + (!useTensorCores ? "fp32" : tcGrouped ? "on tensor cores, "
                + (groupedForm() == 2 ? "v2" : "v1" + (tcGroupedV2 ? "" : " (v2: " + tcGroupedV2WhyNot + ")"))
                : "per expert (" + tcGroupedWhyNot + ")")
                + "; decode kernels " + decodeKernelLine()
                + "; decode products " + decodeProductsLine());
        if (profileSync || profileEvents) kernelTimes(); // the start-up probes' launches are not the caller's
    }

    private static final System.Logger LOG = System.getLogger(ResidentOps.class.getName());

    @Override
    public String decodeKernelSet() { return decodeKernelLine(); }

    /** The decode kernel set as the start-up line and EngineBench name it. */
    public synchronized String decodeKernelLine() {
        if (v3) return "v3 (decode_v3.cl, rows a lane group " + (v3Rows == 0 ? "auto" : v3Rows)
                + (!v3Fused ? ", fused forms off: " + v3FusedWhyNot
                : (v3Tails ? ", norm and router in the products' tails" : ", tails apart")
                + (v3Lightning ? ", a lightning layer one launch at batch 1" : "")) + ")";
        String line = (v2 ? "v2" : "v1") + (v2 && warpRows == 2 ? " (two rows a warp)" : "");
        return V3_DEFAULT && v3WhyNot != null ? line + " (v3 asked for: " + v3WhyNot + ")" : line;
    }

    /**
     * resident.cl for this device: on NVIDIA with LM_NVIDIA (the PTX fence and the early exit of the tails' idle
     * groups), falling back to the portable form if that build fails, so that a compiler that rejects the inline PTX
     * costs speed, not the device path.
     */
    private static MemorySegment buildResident(MemorySegment context, MemorySegment device, String options) {
        if (TensorCores.nvidia(Cl.deviceVendor(device))) {
            try {
                return Cl.buildProgram(context, device, source(), options + " -D LM_NVIDIA=1");
            } catch (RuntimeException e) {
                String log = String.valueOf(e.getMessage());
                LOG.log(System.Logger.Level.WARNING, "resident.cl with LM_NVIDIA did not build, portable form instead: "
                        + log.substring(0, Math.min(400, log.length())));
            }
        }
        return Cl.buildProgram(context, device, source(), options);
    }

    // ---- decode products on tensor cores (decode_tc.cl, DecodeTc) ---------------------------------------------------

    /** resident.cl + decode_tc.cl, built where the probe (or a test) asked for it and its check passed; else null. */
    private MemorySegment dtcProgram;
    private final Map<String, MemorySegment> dtcKernels = new HashMap<>();
    /** The decode products' form now (OFF: the v2 / v1 kernels), and why the wanted one is not used (null when it is). */
    private DecodeTc.Form dtcForm = DecodeTc.Form.OFF;
    private String dtcWhyNot;
    /** The start-up check's comparisons (kernel, form, error against the v2 twin); empty before a build. */
    private List<DecodeTc.Result> dtcChecks = List.of();

    /** The start-up probe of -Dlightmesh.decode.tc: off, else NVIDIA only, then the build and the check. */
    private void probeDecodeTc() {
        DecodeTc.Form want = DecodeTc.wanted();
        if (want == DecodeTc.Form.OFF) return;
        String vendor = Cl.deviceVendor(device);
        // the default (split) off NVIDIA: the v2 kernels, said by the start-up line, with no warning nobody asked for
        if (!TensorCores.nvidia(vendor) && System.getProperty("lightmesh.decode.tc") == null) return;
        if (!TensorCores.nvidia(vendor)) {
            dtcWhyNot = "device vendor '" + vendor + "' is not NVIDIA (the mma is PTX asm)";
        } else {
            dtcWhyNot = tryDecodeTc();
            if (dtcWhyNot == null) dtcForm = want;
        }
        if (dtcWhyNot != null) LOG.log(System.Logger.Level.WARNING, "decode products stay on the v2 kernels ("
                + "-Dlightmesh.decode.tc=" + want.suffix() + "): " + dtcWhyNot);
    }

    /**
     * Builds decode_tc.cl (after resident.cl; with LM_NVIDIA on NVIDIA, so the mma is the PTX one, elsewhere the
     * emulated one) and checks every kernel of both forms against its v2 twin; keeps the program when all agree.
     * Returns null then, else why not (the program dropped). The form stays as it was: {@link #decodeProducts}
     * chooses it. Package-private: the tests run the build-and-check on any device.
     */
    synchronized String tryDecodeTc() {
        releaseDecodeTc();
        boolean nv = TensorCores.nvidia(Cl.deviceVendor(device));
        try {
            dtcProgram = Cl.buildProgram(context, device, DecodeTc.source(), options + (nv ? " -D LM_NVIDIA=1" : ""));
        } catch (RuntimeException e) {
            return "decode_tc.cl did not build: " + clip(String.valueOf(e.getMessage()), 600);
        }
        try {
            dtcChecks = DecodeTc.check(this);
        } catch (RuntimeException e) {
            releaseDecodeTc();
            return "the check of decode_tc.cl failed: " + clip(String.valueOf(e.getMessage()), 400);
        }
        for (DecodeTc.Result r : dtcChecks) {
            if (!r.ok()) {
                String why = "decode_tc.cl disagrees with the v2 kernels: " + r + " > " + r.form().tol() + " (" + dtcChecks + ")";
                releaseDecodeTc();
                return why;
            }
        }
        LOG.log(System.Logger.Level.INFO, "decode_tc.cl checked against the v2 kernels (relative L2): " + dtcChecks);
        return null;
    }

    private void releaseDecodeTc() {
        dtcForm = DecodeTc.Form.OFF;
        for (MemorySegment k : dtcKernels.values()) Cl.releaseKernel(k);
        dtcKernels.clear();
        for (var it = sites.entrySet().iterator(); it.hasNext(); ) {
            var e = it.next();
            if (e.getKey().kernel().startsWith("dtc_")) {
                Cl.releaseKernel(e.getValue().kernel());
                it.remove();
            }
        }
        if (dtcProgram != null) Cl.releaseProgram(dtcProgram);
        dtcProgram = null;
    }

    /** Whether decode_tc.cl is built and checked (at start, or by {@link #tryDecodeTc}). */
    synchronized boolean decodeTcBuilt() { return dtcProgram != null; }

    /** The start-up check's results (tests print the errors). */
    synchronized List<DecodeTc.Result> decodeTcChecks() { return dtcChecks; }

    /**
     * Chooses the decode products' form, "off", "split" or "bf16" (null: the setting's, -Dlightmesh.decode.tc), for
     * the fused step and the matrix-vector products of up to 16 rows; a tensor-core form only where decode_tc.cl is
     * built and checked (else off). Returns the form now. Tests, benchmarks.
     */
    public synchronized String decodeProducts(String form) {
        DecodeTc.Form f = form == null ? DecodeTc.wanted() : DecodeTc.Form.of(form);
        dtcForm = dtcProgram == null ? DecodeTc.Form.OFF : f;
        return dtcForm.suffix();
    }

    @Override
    public synchronized String decodeProducts() { return decodeProductsLine(); }

    /** The decode products' form now: off, split or bf16 (tests restore it). */
    synchronized String decodeProductsForm() { return dtcForm.suffix(); }

    /** The start-up line's words for the decode products. */
    private String decodeProductsLine() {
        String line = DecodeTc.describe(v3 ? DecodeTc.Form.OFF : dtcForm) + (v3 && dtcForm != DecodeTc.Form.OFF
                ? " (tensor cores, " + dtcForm.suffix() + ", not used under the v3 decode kernels)" : "");
        return dtcWhyNot == null ? line : line + " (-Dlightmesh.decode.tc=" + DecodeTc.wanted().suffix() + " not used: "
                + clip(dtcWhyNot, 300) + ")";
    }

    /**
     * The tensor-core kernel {@code base_<form>} for a product of bf16 (or not) weights with rows of {@code in}, or
     * null where the v3, v2 or v1 kernels run it (form off, fp32 weights, in % 8 != 0, or the v3 decode kernels asked
     * for: a set chosen by name takes every product of the step, its fused tails included, as its tests count them).
     */
    synchronized String decodeTcKernel(String base, boolean bf16, int in) {
        if (dtcForm == DecodeTc.Form.OFF || v3 || !bf16 || in % 8 != 0) return null;
        return base + "_" + dtcForm.suffix();
    }

    /** A launch of a decode_tc.cl kernel at {@code site} (as {@link #launchAt}). */
    void launchDtcAt(String kernel, Object site, long global, Object... args) {
        if (dtcProgram == null) throw new IllegalStateException("decode_tc.cl is not built");
        launchAt(dtcProgram, kernel, site, global, args);
    }

    /** A launch of a decode_tc.cl kernel (no site: the check, the products of {@link #product}). */
    void launchDtc(String kernel, long global, Object... args) {
        if (dtcProgram == null) throw new IllegalStateException("decode_tc.cl is not built");
        launch(dtcKernels.computeIfAbsent(kernel, kn -> Cl.createKernel(dtcProgram, kn)), kernel, global, args);
    }

    /** A launch of a resident.cl kernel by name (DecodeTc's check runs the v2 twins). */
    void launchResident(String kernel, long global, Object... args) { launch(kernel, global, args); }

    /** A device copy of raw bf16 bits. */
    synchronized ClBuffer bf16Buffer(short[] bits) {
        ClBuffer b = shorts(Math.max(1, bits.length));
        if (bits.length > 0) Cl.write(queue, b.mem(), 0, 2L * bits.length, MemorySegment.ofArray(bits));
        return b;
    }

    // ---- tensor cores --------------------------------------------------------------------------------------------

    /** The start-up probe: the setting, then NVIDIA only, then the build and the check ({@link TensorCores}). */
    private TensorCores.Verdict probeTensorCores() {
        if (!TensorCores.wanted()) return TensorCores.Verdict.no("off (-Dlightmesh.opencl.tensorCores=false)");
        String vendor = Cl.deviceVendor(device);
        if (!TensorCores.nvidia(vendor)) {
            return TensorCores.Verdict.no("device vendor '" + vendor + "' is not NVIDIA (the kernels are PTX asm)");
        }
        return tryTensorCores(TensorCores.source());
    }

    /**
     * Builds {@code source} (kernels gemm_tc_f32 and gemm_tc_bf16) and checks both on a small ragged product against
     * the host; keeps the program when they agree. Package-private: the tests run the build-and-check on any device.
     */
    synchronized TensorCores.Verdict tryTensorCores(String source) {
        releaseTensorCores();
        MemorySegment p;
        // Built with the grouped expert kernels appended, in falling order of what a compiler accepts: everything;
        // the grouped kernels' first form only (XT_NO_V2); no grouped kernels; then the same without the v2 GEMM
        // forms (TC_NO_GEMM2: a compiler that rejects their PTX keeps v1). Each step down is logged as its reason.
        boolean grouped = true;
        String whyNot = null;
        String v2BuildFailure = null;
        gemmBuildFailure = null;
        String experts = TensorCores.expertsSource();
        String[][] attempts = {
                {source + "\n" + experts, "all"},
                {source + "\n#define XT_NO_V2\n" + experts, "grouped v1"},
                {source, "no grouped"},
                {"#define TC_NO_GEMM2\n" + source + "\n#define XT_NO_V2\n" + experts, "gemm v1, grouped v1"},
                {"#define TC_NO_GEMM2\n" + source, "gemm v1, no grouped"}};
        p = null;
        String firstLog = null, lastLog = null;
        for (String[] a : attempts) {
            try {
                p = Cl.buildProgram(context, device, a[0], options);
            } catch (RuntimeException e) {
                lastLog = String.valueOf(e.getMessage());
                if (firstLog == null) firstLog = lastLog;
                continue;
            }
            switch (a[1]) {
                case "all" -> { }
                case "grouped v1" -> v2BuildFailure = "did not build: " + clip(firstLog, 300);
                case "no grouped" -> { grouped = false; whyNot = "experts_tc.cl did not build: " + clip(firstLog, 400); }
                case "gemm v1, grouped v1" -> {
                    gemmBuildFailure = "v2 did not build: " + clip(firstLog, 400);
                    v2BuildFailure = gemmBuildFailure;
                }
                default -> {
                    gemmBuildFailure = "v2 did not build: " + clip(firstLog, 400);
                    grouped = false;
                    whyNot = "experts_tc.cl did not build: " + clip(firstLog, 400);
                }
            }
            break;
        }
        if (p == null) return TensorCores.Verdict.no("the compiler rejected tensorcore.cl: " + clip(lastLog, 600));
        tcProgram = p;
        int n = TensorCores.CHECK_N, in = TensorCores.CHECK_IN, out = TensorCores.CHECK_OUT;
        java.util.Random rnd = new java.util.Random(14);
        float[] x = new float[n * in], wv = new float[out * in];
        for (int i = 0; i < x.length; i++) x[i] = rnd.nextFloat() * 2 - 1;
        for (int i = 0; i < wv.length; i++) wv[i] = TensorCores.roundBf16(rnd.nextFloat() * 2 - 1);
        float[] ref = TensorCores.reference(x, wv, n, in, out);
        ClBuffer bx = floats((long) n * in), by = floats((long) n * out), wf = floats((long) out * in);
        ClBuffer wb = shorts((long) out * in);
        try {
            short[] bits = new short[wv.length];
            for (int i = 0; i < wv.length; i++) bits[i] = (short) (Float.floatToRawIntBits(wv[i]) >>> 16);
            write(bx, 0, x, 0, x.length);
            write(wf, 0, wv, 0, wv.length);
            Cl.write(queue, wb.mem(), 0, 2L * bits.length, MemorySegment.ofArray(bits));
            for (boolean bf16 : new boolean[]{false, true}) {
                float[] got = new float[n * out];
                java.util.Arrays.fill(got, Float.NaN);
                write(by, 0, got, 0, got.length);
                tcProduct(bf16 ? wb : wf, 0L, bf16, out, in, bx, n, by);
                read(by, 0, got, 0, got.length);
                String bad = TensorCores.mismatch(ref, got);
                if (bad != null) {
                    releaseTensorCores();
                    return TensorCores.Verdict.no("the " + (bf16 ? "bf16" : "fp32") + "-weight kernel disagrees with "
                            + "the host on a " + n + "x" + in + "x" + out + " product: " + bad);
                }
            }
        } catch (RuntimeException e) {
            releaseTensorCores();
            return TensorCores.Verdict.no("the check product failed: " + e.getMessage());
        } finally {
            bx.close();
            by.close();
            wf.close();
            wb.close();
        }
        String bad = checkFlash();
        if (bad == null) bad = checkLightning();
        if (bad != null) {
            releaseTensorCores();
            return TensorCores.Verdict.no(bad);
        }
        if (grouped) {
            whyNot = checkGroupedExperts(1);
            grouped = whyNot == null;
        }
        tcGrouped = grouped;
        tcGroupedWhyNot = grouped ? null : whyNot;
        String whyNotV2 = !grouped ? whyNot : v2BuildFailure != null ? v2BuildFailure : checkGroupedExperts(2);
        tcGroupedV2 = whyNotV2 == null;
        tcGroupedV2WhyNot = whyNotV2;
        if (grouped && !tcGroupedV2) LOG.log(System.Logger.Level.WARNING, "grouped experts v2 not used: " + whyNotV2);
        if (!grouped) LOG.log(System.Logger.Level.WARNING, "grouped experts stay on fp32 products: " + whyNot);
        return new TensorCores.Verdict(true, "mma.sync bf16 on " + name + ", checked against the host; " + chooseGemm());
    }

    /**
     * Checks every v2 GEMM form on the probe's product and makes the wanted one ({@link TensorCores#wantedGemm})
     * current if it passed, else v1. Returns the choice and why (for the start-up log).
     */
    private String chooseGemm() {
        gemmsChecked.clear();
        gemmsChecked.add(TensorCores.V1);
        gemm = TensorCores.V1;
        TensorCores.Gemm want = TensorCores.wantedGemm();
        StringBuilder why = new StringBuilder();
        if (gemmBuildFailure != null) why.append("; ").append(gemmBuildFailure);
        else if (want == TensorCores.V1) why.append("; v2 forms not checked (-Dlightmesh.opencl.gemm=v1)");
        else for (TensorCores.Gemm g : TensorCores.V2) {
            String bad = checkGemm(g);
            if (bad == null) gemmsChecked.add(g);
            else why.append("; ").append(g.name()).append(" not used: ").append(bad);
        }
        if (gemmsChecked.contains(want)) gemm = want;
        String tiles = gemm.tileRows() + "x" + gemm.tileCols() + " tiles, " + gemm.threads() + " work-items";
        String head = gemm == want ? "GEMM " + gemm.name() + " (" + gemm.kernel() + ", " + tiles + ")"
                : "GEMM v1 (" + tiles + "), " + want.name() + " wanted but not checked";
        return head + why;
    }

    /** Why the v2 forms were left out of the tensor-core program (its first build failed); null when they built. */
    private String gemmBuildFailure;

    private static String clip(String log, int max) {
        String l = String.valueOf(log);
        return l.substring(0, Math.min(max, l.length())).replace('\n', ' ');
    }

    /** Null when the v2 form {@code g} builds and agrees with the host on the probe's product, else why not. */
    private String checkGemm(TensorCores.Gemm g) {
        int n = TensorCores.CHECK_N, in = TensorCores.CHECK_IN, out = TensorCores.CHECK_OUT;
        java.util.Random rnd = new java.util.Random(17);
        float[] x = new float[n * in], wv = new float[out * in], got = new float[n * out];
        for (int i = 0; i < x.length; i++) x[i] = rnd.nextFloat() * 2 - 1;
        for (int i = 0; i < wv.length; i++) wv[i] = TensorCores.roundBf16(rnd.nextFloat() * 2 - 1);
        float[] ref = TensorCores.reference(x, wv, n, in, out);
        java.util.Arrays.fill(got, Float.NaN);
        ClBuffer bx = floats((long) n * in), by = floats((long) n * out), wb = shorts((long) out * in);
        try {
            short[] bits = new short[wv.length];
            for (int i = 0; i < wv.length; i++) bits[i] = (short) (Float.floatToRawIntBits(wv[i]) >>> 16);
            write(bx, 0, x, 0, x.length);
            write(by, 0, got, 0, got.length);
            Cl.write(queue, wb.mem(), 0, 2L * bits.length, MemorySegment.ofArray(bits));
            tc2Product(g, wb, 0L, out, in, bx, n, by);
            read(by, 0, got, 0, got.length);
        } catch (RuntimeException e) {
            return "the check product failed: " + String.valueOf(e.getMessage()).replace('\n', ' ');
        } finally {
            bx.close();
            by.close();
            wb.close();
        }
        String bad = TensorCores.mismatch(ref, got);
        return bad == null ? null : g.kernel() + " disagrees with the host on a " + n + "x" + in + "x" + out
                + " product: " + bad;
    }

    /** Whether products too small to fill the device with the current v2 form's tiles take TensorCores.SMALL. */
    private boolean smallTiles = TensorCores.smallTilesWanted();

    /**
     * The v2 form for an n x out product: the current one, or the small-tile form where the current one's tiles
     * would reach at most half the compute units (and the small form passed the probe).
     */
    synchronized TensorCores.Gemm formFor(int n, int out) {
        if (!smallTiles || 2L * ceilDiv(n, gemm.tileRows()) * ceilDiv(out, gemm.tileCols()) > computeUnits) {
            return gemm;
        }
        TensorCores.Gemm s = TensorCores.gemm(TensorCores.SMALL);
        return gemmsChecked.contains(s) ? s : gemm;
    }

    /** Switches the small-tile choice ({@link #formFor}) on or off (benchmarks compare forms one at a time). */
    public synchronized void smallTiles(boolean on) { smallTiles = on; }

    /** Whether the small-tile choice is on. */
    public synchronized boolean smallTiles() { return smallTiles; }

    /** The GEMM forms the probe checked (v1 first; none without tensor cores). Benchmarks and tests. */
    public synchronized List<String> gemms() {
        List<String> names = new ArrayList<>();
        if (tcProgram != null) for (TensorCores.Gemm g : gemmsChecked) names.add(g.name());
        return names;
    }

    /** The GEMM form of bf16-weight products on tensor cores now. */
    public synchronized String gemm() { return gemm.name(); }

    /** Makes {@code name} (v1, v2, v2w4, v2wide, v2s, v2n) the current GEMM form if the probe checked it; whether. */
    public synchronized boolean useGemm(String name) {
        TensorCores.Gemm g = TensorCores.gemm(name);
        if (tcProgram == null || !gemmsChecked.contains(g)) return false;
        gemm = g;
        return true;
    }

    /**
     * The flash attention kernel on a small causal case (two query tiles, a cached prefix, GQA 2) against the host
     * reference; null when within bf16's bound ({@link TensorCores#FLASH_CHECK_TOL}), else why not.
     */
    private String checkFlash() {
        int H = 4, KV = 2, D = 32, before = 5, n = 140, total = before + n;
        java.util.Random rnd = new java.util.Random(15);
        float[] q = new float[n * H * D], k = new float[total * KV * D], v = new float[total * KV * D];
        for (float[] a : new float[][]{q, k, v}) for (int i = 0; i < a.length; i++) a[i] = rnd.nextFloat() * 2 - 1;
        float[] ref = new float[n * H * D], got = new float[n * H * D];
        new io.lightmesh.engine.backend.ReferenceOps().softmaxAttention(q, n, H, KV, D, k, v, before, ref);
        java.util.Arrays.fill(got, Float.NaN);
        ClBuffer bq = floats(q.length), bk = floats(k.length), bv = floats(v.length), bo = floats(got.length);
        try {
            write(bq, 0, q, 0, q.length);
            write(bk, 0, k, 0, k.length);
            write(bv, 0, v, 0, v.length);
            write(bo, 0, got, 0, got.length);
            flashAttention(bq, n, H, KV, D, bk, bv, before + 1, bo);
            read(bo, 0, got, 0, got.length);
        } catch (RuntimeException e) {
            return "the flash attention check failed: " + e.getMessage();
        } finally {
            bq.close();
            bk.close();
            bv.close();
            bo.close();
        }
        String bad = TensorCores.mismatch(ref, got, TensorCores.FLASH_CHECK_TOL);
        return bad == null ? null : "the flash attention kernel disagrees with the host: " + bad;
    }

    /**
     * The lightning block form on a small chunk (two blocks and a partial one, a non-zero starting state) against
     * the host recurrence; null when within bf16's bound, else why not. Checks the outputs and the state after.
     */
    private String checkLightning() {
        int H = 2, D = 32, n = 150;
        java.util.Random rnd = new java.util.Random(16);
        float[] qkv = new float[n * 3 * H * D], s0 = new float[H * D * D], decay = {0.05f, 0.3f};
        for (int i = 0; i < qkv.length; i++) qkv[i] = rnd.nextFloat() * 2 - 1;
        for (int i = 0; i < s0.length; i++) s0[i] = rnd.nextFloat() * 2 - 1;
        float[] refS = s0.clone(), ref = new float[n * H * D];
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < H; h++) {
                int base = (t * H + h) * 3 * D;
                float r = (float) Math.exp(-decay[h]);
                for (int i = 0; i < D; i++) {
                    for (int j = 0; j < D; j++) {
                        int e = (h * D + i) * D + j;
                        refS[e] = r * refS[e] + qkv[base + D + i] * qkv[base + 2 * D + j];
                    }
                }
                for (int j = 0; j < D; j++) {
                    float o = 0;
                    for (int i = 0; i < D; i++) o += qkv[base + i] * refS[(h * D + i) * D + j];
                    ref[(t * H + h) * D + j] = o;
                }
            }
        }
        float[] got = new float[ref.length], gotS = new float[s0.length];
        java.util.Arrays.fill(got, Float.NaN);
        ClBuffer bq = floats(qkv.length), bs = floats(s0.length), bd = floats(H), bo = floats(got.length);
        try {
            write(bq, 0, qkv, 0, qkv.length);
            write(bs, 0, s0, 0, s0.length);
            write(bd, 0, decay, 0, H);
            write(bo, 0, got, 0, got.length);
            lightningBlocks(bq, n, H, D, bd, bs, bo);
            read(bo, 0, got, 0, got.length);
            read(bs, 0, gotS, 0, gotS.length);
        } catch (RuntimeException e) {
            return "the lightning block check failed: " + e.getMessage();
        } finally {
            bq.close();
            bs.close();
            bd.close();
            bo.close();
        }
        String bad = TensorCores.mismatch(ref, got, TensorCores.FLASH_CHECK_TOL);
        if (bad == null) bad = TensorCores.mismatch(refS, gotS, TensorCores.FLASH_CHECK_TOL);
        return bad == null ? null : "the lightning block kernels disagree with the host: " + bad;
    }

    /**
     * The grouped expert kernels on tensor cores (bf16 and fp32 weights) on a small ragged case against the host
     * ({@link TensorCores#groupedReference}): three experts of which one takes no rows and one more rows than a tile,
     * token rows out of order, pairs written out of order; null when within bf16's bound, else why not. Form 1 with
     * both weight dtypes, form 2 (v2: bf16 weights only).
     */
    private String checkGroupedExperts(int form) {
        int E = 3, h = 40, I = 72, tokens = 90;
        int[] count = {0, 150, 7}, first = {0, 0, 150}, slot = {0, 1, 2};
        int rows = 157;
        java.util.Random rnd = new java.util.Random(17);
        int[] tokenRow = new int[rows], pairIndex = new int[rows];
        for (int i = 0; i < rows; i++) {
            tokenRow[i] = rnd.nextInt(tokens);
            pairIndex[i] = (i * 37 + 11) % rows;  // a permutation (37 and 157 are coprime)
        }
        float[] x = new float[tokens * h];
        for (int i = 0; i < x.length; i++) x[i] = rnd.nextFloat() * 2 - 1;
        float[][] w1 = new float[E][I * h], w3 = new float[E][I * h], w2 = new float[E][h * I];
        for (float[][] m : new float[][][]{w1, w3, w2}) {
            for (float[] a : m) for (int i = 0; i < a.length; i++) a[i] = TensorCores.roundBf16((rnd.nextFloat() * 2 - 1) * 0.5f);
        }
        float[] ref = TensorCores.groupedReference(x, h, I, w1, w3, w2, 3, slot, first, count, tokenRow, pairIndex, rows);
        for (boolean bf16 : form == 2 ? new boolean[]{true} : new boolean[]{false, true}) {
            Tensor[] t1 = new Tensor[E], t3 = new Tensor[E], t2 = new Tensor[E];
            for (int e = 0; e < E; e++) {
                t1[e] = TensorCores.tensor("w1", w1[e], I, h, bf16);
                t3[e] = TensorCores.tensor("w3", w3[e], I, h, bf16);
                t2[e] = TensorCores.tensor("w2", w2[e], h, I, bf16);
            }
            Experts set = (Experts) experts(t1, t3, t2);
            float[] got = new float[rows * h];
            java.util.Arrays.fill(got, Float.NaN);
            ClBuffer bx = floats(x.length), act = floats((long) rows * I), pairs = floats(got.length);
            try {
                write(bx, 0, x, 0, x.length);
                write(pairs, 0, got, 0, got.length);
                groupedLaunches(set, form, 3, slot, first, count, tokenRow, pairIndex, rows, bx, act, pairs);
                read(pairs, 0, got, 0, got.length);
            } catch (RuntimeException e) {
                return "the grouped expert check failed: " + e.getMessage();
            } finally {
                release(set);
                bx.close();
                act.close();
                pairs.close();
            }
            String bad = TensorCores.mismatch(ref, got, TensorCores.FLASH_CHECK_TOL);
            if (bad != null) {
                return "the grouped expert kernels (form " + form + ", " + (bf16 ? "bf16" : "fp32")
                        + " weights) disagree with the host: " + bad;
            }
        }
        return null;
    }

    /** Drops the tensor-core program and kernels; products go back to the fp32 GEMM. */
    private void releaseTensorCores() {
        useTensorCores = false;
        gemm = TensorCores.V1;
        gemmsChecked.clear();
        tcGrouped = false;
        tcGroupedWhyNot = "tensor cores off";
        tcGroupedV2 = false;
        tcGroupedV2WhyNot = "tensor cores off";
        for (MemorySegment k : tcKernels.values()) Cl.releaseKernel(k);
        tcKernels.clear();
        if (tcProgram != null) Cl.releaseProgram(tcProgram);
        tcProgram = null;
    }

    /** Drops the tensor-core kernels (tests of the probe restore the state they found). */
    synchronized void dropTensorCores() { releaseTensorCores(); }

    /** The device's vendor string (CL_DEVICE_VENDOR). */
    public String vendor() { return Cl.deviceVendor(device); }

    /** The start-up probe's verdict on this device. */
    public synchronized TensorCores.Verdict tensorCores() { return tensorCores; }

    /**
     * Chooses the products of {@link #GEMM_MIN_ROWS}+ rows: on tensor cores (bf16 activations, where the probe
     * passed) or the fp32 GEMM. Returns whether they now run on tensor cores.
     */
    public synchronized boolean useTensorCores(boolean on) {
        useTensorCores = on && tcProgram != null;
        return useTensorCores;
    }

    /** Whether products of {@link #GEMM_MIN_ROWS}+ rows run on tensor cores now. */
    public synchronized boolean productsOnTensorCores() { return useTensorCores; }

    private void tcProduct(ClBuffer buf, long wOff, boolean bf16, int out, int in, Buffer x, int n, Buffer y) {
        MemorySegment k = tcKernels.computeIfAbsent(bf16 ? "gemm_tc_bf16" : "gemm_tc_f32",
                kn -> Cl.createKernel(tcProgram, kn));
        launch(k, bf16 ? "gemm_tc_bf16" : "gemm_tc_f32", (long) ceilDiv(out, GN) * ceilDiv(n, GM) * NT, buf, wOff, x,
                0L, y, 0L, n, in, out);
    }

    /**
     * A bf16-weight product through a v2 GEMM form: the activations rounded to bf16 into {@link #xBf16} first (one
     * pass over x), then the GEMM with both operands copied by cp.async.
     */
    private void tc2Product(TensorCores.Gemm g, ClBuffer buf, long wOff, int out, int in, Buffer x, int n, Buffer y) {
        long count = (long) n * in;
        if (xBf16 == null || xBf16.length() < count) {
            if (xBf16 != null) xBf16.close();
            xBf16 = shorts(Math.max(count, xBf16 == null ? 0 : xBf16.length() + xBf16.length() / 2));
        }
        launch(tcKernel("to_bf16"), "to_bf16", groups((count + 7) / 8) * NT, x, 0L, xBf16, count);
        launchLocal(tcKernel(g.kernel()), g.kernel(), (long) ceilDiv(out, g.tileCols()) * ceilDiv(n, g.tileRows())
                * g.threads(), g.threads(), buf, wOff, xBf16, 0L, y, 0L, n, in, out);
    }

    /** resident.cl, then experts.cl (the grouped experts' fp32 kernels, on its GEMM's helpers). */
    private static String source() { return resource("resident.cl") + "\n" + resource("experts.cl"); }

    static String resource(String file) {
        try (InputStream in = ResidentOps.class.getResourceAsStream(file)) {
            if (in == null) throw new OpenClException(file + " is missing from the engine jar");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new OpenClException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    public String deviceName() { return name; }

    int computeUnits() { return computeUnits; }

    // ---- memory ------------------------------------------------------------------------------------------------------

    @Override
    public synchronized ClBuffer floats(long length) { return new ClBuffer(length, 4); }

    @Override
    public synchronized ClBuffer ints(long length) { return new ClBuffer(length, 4); }

    private synchronized ClBuffer shorts(long length) { return new ClBuffer(length, 2); }

    @Override
    public synchronized void write(Buffer dst, long dstOff, float[] src, int srcOff, int n) {
        check(dst, dstOff, n);
        if (n == 0) return;
        synced();
        // straight from the array (pinned during the blocking call): no staging copy; the layout is the host's, and
        // OpenCL devices here are little-endian like the hosts (asSlice checks srcOff and n against the array)
        Cl.write(queue, cl(dst).mem(), 4 * dstOff, 4L * n, MemorySegment.ofArray(src).asSlice(4L * srcOff, 4L * n));
    }

    @Override
    public synchronized void write(Buffer dst, int[] src, int n) {
        check(dst, 0, n);
        if (n == 0) return;
        synced();
        Cl.write(queue, cl(dst).mem(), 0, 4L * n, MemorySegment.ofArray(src).asSlice(0, 4L * n));
    }

    /**
     * As {@link #write(Buffer, int[], int)} without waiting: the ids are copied into native memory of their own, kept
     * until the next sync of the queue (by then the transfer is done), and the transfer enqueued behind what is there.
     */
    @Override
    public synchronized void writeAsync(Buffer dst, int[] src, int n) {
        check(dst, 0, n);
        if (n == 0) return;
        MemorySegment stage = Arena.ofAuto().allocate(4L * n, 8);
        MemorySegment.copy(src, 0, stage, ValueLayout.JAVA_INT, 0, n);
        Cl.writeAsync(queue, cl(dst).mem(), 0, 4L * n, stage);
        staged.add(stage);
    }

    /** Native copies of writeAsync's ids, held until the queue's next sync (the GC frees them after). */
    private final List<MemorySegment> staged = new ArrayList<>();

    /** Blocking reads, blocking writes and finishes through this object: each waits for the queue to drain. */
    private long hostSyncs;

    /** A blocking transfer or a finish is about to run: counted; writeAsync's staging is free after it. */
    private void synced() {
        hostSyncs++;
    }

    /** After a sync: every transfer enqueued before it is done. */
    private void drained() {
        staged.clear();
        harvest();
    }

    @Override
    public synchronized long hostSyncs() { return hostSyncs; }

    @Override
    public synchronized void read(Buffer src, long srcOff, float[] dst, int dstOff, int n) {
        check(src, srcOff, n);
        if (n == 0) return;
        synced();
        Cl.read(queue, cl(src).mem(), 4 * srcOff, 4L * n, MemorySegment.ofArray(dst).asSlice(4L * dstOff, 4L * n));
        drained();
    }

    @Override
    public synchronized void read(Buffer src, int[] dst, int n) {
        check(src, 0, n);
        if (n == 0) return;
        synced();
        Cl.read(queue, cl(src).mem(), 0, 4L * n, MemorySegment.ofArray(dst).asSlice(0, 4L * n));
        drained();
    }

    @Override
    public synchronized void copy(Buffer src, long srcOff, Buffer dst, long dstOff, long n) {
        check(src, srcOff, n);
        check(dst, dstOff, n);
        if (n > 0) Cl.copy(queue, cl(src).mem(), cl(dst).mem(), 4 * srcOff, 4 * dstOff, 4 * n);
    }

    @Override
    public synchronized void finish() {
        synced();
        Cl.finish(queue);
        drained();
    }

    /** Off with -Dlightmesh.opencl.flush=false (to measure what it brings). */
    private static final boolean FLUSH = !"false".equalsIgnoreCase(System.getProperty("lightmesh.opencl.flush", "true"));

    @Override
    public synchronized void flush() {
        if (FLUSH && !closed) Cl.flush(queue);
    }

    private static ClBuffer cl(Buffer b) { return (ClBuffer) b; }

    static void check(Buffer b, long off, long n) {
        if (off < 0 || n < 0 || off + n > b.length()) {
            throw new IndexOutOfBoundsException("elements " + off + ".." + (off + n) + " of a device buffer of " + b.length());
        }
    }

    // ---- weights -----------------------------------------------------------------------------------------------------

    @Override
    public synchronized void preload(Collection<Tensor> ws) {
        for (Tensor w : ws) weight(w);
    }

    /**
     * Bytes one element of a weight stored as {@code stored} takes on the device: bf16 is kept raw (2), f32 as it is
     * and f16 widened to fp32 (4). What a device holds for a weight is its elements times this, whatever the
     * checkpoint's size of it (an f16 expert takes twice its file size): memory budgets count with it.
     */
    public static int weightElementBytes(DType stored) { return stored == DType.BF16 ? 2 : 4; }

    Weight weight(Tensor w) {
        Weight p = weights.get(w);
        if (p != null) return p;
        if (w.rank() != 2) throw new IllegalArgumentException("weight " + w + " is not 2-D");
        boolean bf16 = w.dtype() == DType.BF16;
        ClBuffer buf = new ClBuffer(w.size(), weightElementBytes(w.dtype()));
        upload(w, buf, 0);
        p = new Weight(buf, bf16, (int) w.dim(0), (int) w.dim(1));
        weights.put(w, p);
        return p;
    }

    /**
     * Copies tensor {@code w} into {@code buf} at element {@code off}: F32 and BF16 straight from the tensor's memory
     * (the mapped checkpoint), F16 widened to fp32 through a staging buffer. In chunks, so that a write from a Java
     * array (pinned for the call) holds the GC back briefly.
     */
    private void upload(Tensor w, ClBuffer buf, long off) {
        boolean widen = w.dtype() == DType.F16;
        int eb = w.dtype() == DType.BF16 ? 2 : 4;
        long n = w.size(), per = UPLOAD_CHUNK / eb;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment stage = widen ? a.allocate(Math.min(UPLOAD_CHUNK, n * eb), 64) : null;
            for (long i = 0; i < n; i += per) {
                long m = Math.min(per, n - i);
                MemorySegment src;
                if (widen) {
                    for (long e = 0; e < m; e++) stage.set(F32, 4 * e, w.get(i + e));
                    src = stage.asSlice(0, m * eb);
                } else {
                    src = w.data().asSlice(i * eb, m * eb);
                }
                Cl.write(queue, buf.mem(), (off + i) * eb, m * eb, src);
            }
        }
    }

    @Override
    public synchronized ExpertSet experts(Tensor[] w1, Tensor[] w3, Tensor[] w2) {
        int e = w1.length;
        if (w3.length != e || w2.length != e || e == 0) throw new IllegalArgumentException("expert lists differ in length");
        return new Experts(stack(w1), stack(w3), stack(w2), e);
    }

    @Override
    public synchronized void release(ExpertSet set) {
        Experts ex = (Experts) set;
        for (Weight w : new Weight[]{ex.w1, ex.w3, ex.w2}) w.buf.close();
    }

    private Weight stack(Tensor[] ws) {
        DType dt = ws[0].dtype();
        long rows = ws[0].dim(0), cols = ws[0].dim(1);
        for (Tensor w : ws) {
            if (w.dtype() != dt || w.dim(0) != rows || w.dim(1) != cols) {
                throw new IllegalArgumentException("experts of one layer must share dtype and shape: " + w + " vs " + ws[0]);
            }
        }
        boolean bf16 = dt == DType.BF16;
        long per = rows * cols;
        ClBuffer buf = new ClBuffer(per * ws.length, weightElementBytes(dt));
        for (int i = 0; i < ws.length; i++) upload(ws[i], buf, i * per);
        return new Weight(buf, bf16, (int) rows, (int) cols);
    }

    /** Suffix of the matrix-vector kernel family for this dtype and row length (vector loads need aligned rows). */
    static String family(boolean bf16, int in) {
        if (bf16) return in % 8 == 0 ? "bf16v" : "bf16s";
        return in % 4 == 0 ? "f32v" : "f32s";
    }

    // ---- math --------------------------------------------------------------------------------------------------------

    @Override
    public synchronized void embed(Tensor table, Buffer ids, int n, Buffer out) {
        Weight t = weight(table);
        int h = t.cols;
        check(out, 0, (long) n * h);
        launch(t.bf16 ? "embed_bf16" : "embed_f32", groups((long) n * h) * NT, t.buf, ids, out, n, h);
    }

    @Override
    public synchronized void matmul(Buffer x, int n, Tensor w, Buffer y) {
        Weight p = weight(w);
        product(p.buf, 0L, p.bf16, p.rows, p.cols, x, n, y);
    }

    /** y[n, out] = x[n, in] . W^T for W [out, in] at element {@code wOff} of {@code buf}: GEMM or matrix-vector passes. */
    private void product(ClBuffer buf, long wOff, boolean bf16, int out, int in, Buffer x, int n, Buffer y) {
        check(x, 0, (long) n * in);
        check(y, 0, (long) n * out);
        if (n >= GEMM_MIN_ROWS && useTensorCores && in % 8 == 0 && wOff % 8 == 0) {
            if (bf16 && gemm != TensorCores.V1) tc2Product(formFor(n, out), buf, wOff, out, in, x, n, y);
            else tcProduct(buf, wOff, bf16, out, in, x, n, y);
            return;
        }
        if (n >= GEMM_MIN_ROWS) {
            launch(bf16 ? "gemm_bf16" : "gemm_f32", (long) ceilDiv(out, GN) * ceilDiv(n, GM) * NT, buf, wOff, x, 0L, y,
                    0L, n, in, out);
            return;
        }
        String tc = wOff % 8 == 0 ? decodeTcKernel("dtc_matvec", bf16, in) : null;
        if (tc != null) { // decode_tc.cl: up to 16 rows a launch, each weight read once for all of them
            for (int r0 = 0; r0 < n; r0 += DecodeTc.MAX_ROWS) {
                int m = Math.min(DecodeTc.MAX_ROWS, n - r0);
                streams((long) out * in * 2);
                launchDtc(m > 8 ? decodeTcKernel("dtc_matvec16", bf16, in) : tc, (long) ceilDiv(out, DecodeTc.ROWS) * NT,
                        buf, wOff, x, (long) r0 * in, y, (long) r0 * out, m, in, out);
            }
            return;
        }
        String k = (v2 ? "matvec2" + rowsTag(warpRows) + "_" : "matvec_") + family(bf16, in);
        boolean d3 = v3 && family(bf16, in).equals("bf16v");
        for (int r0 = 0; r0 < n; r0 += MAXN) {
            int m = Math.min(MAXN, n - r0);
            streams((long) out * in * (bf16 ? 2 : 4));
            if (d3) {
                String k3 = v3Kernel("d3_matvec", m, in);
                launch(k3, (long) ceilDiv(out, v3GroupRows(k3)) * NT, buf, wOff, x, (long) r0 * in, y, (long) r0 * out,
                        m, in, out);
                continue;
            }
            launch(k, (long) ceilDiv(out, v2 ? WG * warpRows : MV_ROWS) * NT, buf, wOff, x, (long) r0 * in, y,
                    (long) r0 * out, m, in, out);
        }
    }

    @Override
    public synchronized void expertProduct(ExpertSet set, ExpertWeight which, int expert, Buffer x, int n, Buffer y) {
        Experts ex = (Experts) set;
        if (expert < 0 || expert >= ex.count) throw new IllegalArgumentException("expert " + expert + " of " + ex.count);
        Weight w = switch (which) {
            case W1 -> ex.w1;
            case W3 -> ex.w3;
            case W2 -> ex.w2;
        };
        product(w.buf, (long) expert * w.rows * w.cols, w.bf16, w.rows, w.cols, x, n, y);
    }

    @Override
    public synchronized void gatherRows(Buffer src, int dim, Buffer index, int indexOff, int n, Buffer dst) {
        check(index, indexOff, n);
        check(dst, 0, (long) n * dim);
        if (n > 0) launch("gather_rows", groups((long) n * dim) * NT, src, index, indexOff, dst, n, dim);
    }

    @Override
    public synchronized void scatterRows(Buffer src, int dim, Buffer index, int indexOff, int n, Buffer dst) {
        check(index, indexOff, n);
        check(src, 0, (long) n * dim);
        if (n > 0) launch("scatter_rows", groups((long) n * dim) * NT, src, index, indexOff, dst, n, dim);
    }

    /**
     * Yes, unless products run on tensor cores and the grouped kernels there did not build or pass their check: then
     * the per-expert pieces keep their tensor-core products rather than the grouped form falling back to fp32.
     */
    @Override
    public synchronized boolean groupsExperts() { return !useTensorCores || tcGrouped; }

    /**
     * Two launches for the whole set: the gate-up kernel (A rows through tokenRow, W1 and W3 in one work-group, SiLU(g)
     * * u in the epilogue) into act, then the down kernel (each output row into its pair's row): on tensor cores where
     * products run there ({@code experts_tc.cl}), else the fp32 tiled form ({@code experts.cl}).
     */
    @Override
    public synchronized void groupedExperts(ExpertSet set, int groups, int[] slot, int[] first, int[] count,
                                            int[] tokenRow, int[] pairIndex, int rows, Buffer x, Buffer act,
                                            Buffer pairs) {
        groupedLaunches((Experts) set, groupedForm(), groups, slot, first, count, tokenRow, pairIndex, rows, x, act,
                pairs);
    }

    /** Whether {@link #groupedExperts} runs on tensor cores now (tests and the start-up log). */
    public synchronized boolean groupedExpertsOnTensorCores() { return useTensorCores && tcGrouped; }

    /** The grouped kernels' form now: 0 fp32 products, 1 tensor cores (v1 tiles), 2 tensor cores v2. */
    public synchronized int groupedForm() {
        if (!useTensorCores || !tcGrouped) return 0;
        return tcGroupedV2 && groupedV2Wanted ? 2 : 1;
    }

    /** Chooses the second tensor-core form where it passed its check (true) or the first (tests, benchmarks). */
    public synchronized void groupedV2(boolean on) { groupedV2Wanted = on; }

    private void groupedLaunches(Experts ex, int form, int groups, int[] slot, int[] first, int[] count,
                                 int[] tokenRow, int[] pairIndex, int rows, Buffer x, Buffer act, Buffer pairs) {
        int inter = ex.w1.rows, hidden = ex.w1.cols;
        GroupedTiles t = GroupedTiles.of(groups, slot, first, count, tokenRow, pairIndex, rows);
        if (t.tiles() == 0) return;
        int maxToken = -1, maxPair = -1;
        for (int g = 0; g < groups; g++) {
            if (count[g] > 0 && (slot[g] < 0 || slot[g] >= ex.count)) {
                throw new IllegalArgumentException("expert slot " + slot[g] + " of " + ex.count);
            }
            for (int i = first[g]; i < first[g] + count[g]; i++) {
                if (tokenRow[i] < 0 || pairIndex[i] < 0) throw new IllegalArgumentException("negative row at " + i);
                maxToken = Math.max(maxToken, tokenRow[i]);
                maxPair = Math.max(maxPair, pairIndex[i]);
            }
        }
        check(x, 0, (maxToken + 1L) * hidden);
        check(pairs, 0, (maxPair + 1L) * hidden);
        check(act, 0, (long) rows * inter);
        int[] table = t.table();
        // a buffer of this call's own, released once enqueued (OpenCL frees it when the launches that use it are
        // done): nothing stays on the device between calls, as a shard's device memory accounting expects
        ClBuffer groupInts = ints(table.length);
        try {
            write(groupInts, table, table.length);
            groupedLaunches(ex, form, t.tiles(), t.tokenOffset(), t.pairOffset(), groupInts, null, maxToken + 1, x, act,
                    pairs);
        } finally {
            groupInts.close();
        }
    }

    /**
     * The table made on the device ({@code moe_group_table}, one work-group) from the router's ids, then the same two
     * launches, sized for the most tiles the pairs can take (ceil(count / 128) + E; the padding tiles have no rows).
     */
    @Override
    public synchronized void groupedExperts(ExpertSet set, Buffer ids, int rows, int k, Buffer x, Buffer act,
                                            Buffer pairs) {
        Experts ex = (Experts) set;
        int inter = ex.w1.rows, hidden = ex.w1.cols, count = rows * k;
        if (ex.count > GROUP_MAX_EXPERTS) {
            throw new IllegalArgumentException("device grouping takes up to " + GROUP_MAX_EXPERTS + " experts, got " + ex.count);
        }
        check(ids, 0, count);
        check(x, 0, (long) rows * hidden);
        check(act, 0, (long) count * inter);
        check(pairs, 0, (long) count * hidden);
        if (count == 0) return;
        int maxTiles = ceilDiv(count, GroupedTiles.TILE_ROWS) + ex.count;
        ClBuffer table = ints(3L * maxTiles + 2L * count);  // released once enqueued, as above
        try {
            launch("moe_group_table", NT, ids, count, k, ex.count, maxTiles, table);
            groupedLaunches(ex, groupedForm(), maxTiles, 3 * maxTiles, 3 * maxTiles + count, table, null, rows, x, act,
                    pairs);
        } finally {
            table.close();
        }
    }

    // ---- prefill routing on the device (prefill_route.cl) ----------------------------------------------------------

    /** prefill_route.cl, built and checked on first use; null where either failed (routeWhyNot says why). */
    private RouteKernels routeKernels;
    private boolean routeTried;
    private String routeWhyNot = "not tried";

    /** The prefill route kernels, built and checked on first call (logged); null where they did not build or pass. */
    synchronized RouteKernels routeKernels() {
        if (!routeTried && !closed) {
            routeTried = true;
            RouteKernels k = null;
            try {
                k = RouteKernels.build(this, context, device, options);
                String why = k.check();
                if (why != null) {
                    k.release();
                    k = null;
                    routeWhyNot = why;
                }
            } catch (RuntimeException e) {
                routeWhyNot = "prefill_route.cl did not build: " + clip(String.valueOf(e.getMessage()), 400);
            }
            routeKernels = k;
            if (k != null) routeWhyNot = null;
            LOG.log(k != null ? System.Logger.Level.INFO : System.Logger.Level.WARNING, k != null
                    ? "prefill routing on " + name + ": on the device (prefill_route.cl built and checked)"
                    : "prefill routing on " + name + ": host table (" + routeWhyNot + ")");
            if (profileSync || profileEvents) { // the check's launches are not the caller's
                Cl.finish(queue);
                drained();
                profile.take("");
            }
        }
        return routeKernels;
    }

    /** Why the prefill route kernels are not in use (null when they are); builds them first if not tried. */
    public synchronized String routeWhyNot() {
        routeKernels();
        return routeWhyNot;
    }

    @Override
    public synchronized boolean routesOnDevice(int experts, int k) {
        return RouteKernels.fits(experts, k) && groupsExperts() && routeKernels() != null;
    }

    @Override
    public long routeTableLength(int rows, int experts, int k) { return new RouteKernels.Layout(rows, k, experts).length(); }

    @Override
    public synchronized void routeAndGroup(Buffer logits, int rows, int experts, int k, Buffer ids, Buffer wts,
                                           Buffer table) {
        if (!routesOnDevice(experts, k)) throw new UnsupportedOperationException("no prefill route kernels: " + routeWhyNot);
        check(logits, 0, (long) rows * experts);
        check(ids, 0, (long) rows * k);
        check(wts, 0, (long) rows * k);
        check(table, 0, routeTableLength(rows, experts, k));
        if (rows > 0) routeKernels.routeAndGroup(cl(logits), rows, experts, k, cl(ids), cl(wts), cl(table));
    }

    /**
     * The grouped launches over a table routeAndGroup wrote for rows * k pairs of this (stacked) set, sized for the
     * most tiles the pairs can take: tiles past the real ones have no rows and their work-groups leave at once.
     */
    @Override
    public synchronized void groupedExpertsRouted(ExpertSet set, Buffer table, int rows, int k, Buffer x, Buffer act,
                                                  Buffer pairs) {
        Experts ex = (Experts) set;
        int inter = ex.w1.rows, hidden = ex.w1.cols, count = rows * k;
        RouteKernels.Layout t = new RouteKernels.Layout(rows, k, ex.count);
        check(table, 0, t.length());
        check(x, 0, (long) rows * hidden);
        check(act, 0, (long) count * inter);
        check(pairs, 0, (long) count * hidden);
        if (count == 0) return;
        int form = groupedForm();
        if (form == 2 && (routedXb == null || routedXb.length() < (long) rows * hidden)) { // kept: no buffer made a layer
            if (routedXb != null) routedXb.close();
            routedXb = shorts((long) rows * hidden);
        }
        groupedLaunches(ex, form, t.maxTiles(), t.tokenOffset(), t.pairOffset(), cl(table), routedXb, rows, x, act, pairs);
    }

    /** x as bf16 for the routed grouped launches (v2 form), kept between layers and grown to the longest chunk. */
    private ClBuffer routedXb;

    @Override
    public synchronized void zero(Buffer x, long off, long n) {
        check(x, off, n);
        RouteKernels k = routeKernels();
        if (k == null) {
            DeviceOps.super.zero(x, off, n);
            return;
        }
        k.zero(cl(x), off, n);
    }

    /** The most experts of a set that moe_group_table groups (its local counters: experts.cl's XG_MAX_E). */
    static final int GROUP_MAX_EXPERTS = 64;

    /**
     * The two launches (three with v2's rounding of x to bf16) over a table on the device; x holds xRows rows. keptXb:
     * the bf16 copy's buffer (>= xRows rows), or null for one of this call's own.
     */
    private void groupedLaunches(Experts ex, int form, int tiles, int tokenOffset, int pairOffset, ClBuffer groupInts,
                                 ClBuffer keptXb, int xRows, Buffer x, Buffer act, Buffer pairs) {
        int inter = ex.w1.rows, hidden = ex.w1.cols;
        if (ex.w1.bf16 != ex.w3.bf16) throw new IllegalArgumentException("W1 and W3 of one set differ in dtype");
        if (hidden % 8 != 0 || inter % 8 != 0) form = 0;
        if (form == 2 && !(ex.w1.bf16 && ex.w2.bf16)) form = 1;
        int upN = ceilDiv(inter, GN / 2), downN = ceilDiv(hidden, GN);
        if (form == 2) {
            // x to bf16 once (keptXb, or a buffer of this call's own, released once enqueued); act written as bf16
            // in place
            long count = (long) xRows * hidden;
            ClBuffer xb = keptXb != null ? keptXb : shorts(count);
            try {
                launch(tcKernel("moe_x_bf16"), "moe_x_bf16", groups((count + 7) / 8) * NT, x, xb, count);
                launch(tcKernel("moe_grouped_up_tc2_bf16"), "moe_grouped_up_tc2_bf16", (long) tiles * upN * NT,
                        ex.w1.buf, ex.w3.buf, xb, groupInts, tokenOffset, act, upN, inter, hidden);
            } finally {
                if (xb != keptXb) xb.close();
            }
            launch(tcKernel("moe_grouped_down_tc2_bf16"), "moe_grouped_down_tc2_bf16", (long) tiles * downN * NT,
                    ex.w2.buf, act, groupInts, pairOffset, pairs, downN, inter, hidden);
            return;
        }
        boolean tc = form == 1;
        String up = (tc ? "moe_grouped_up_tc_" : "moe_grouped_up_") + (ex.w1.bf16 ? "bf16" : "f32");
        String down = (tc ? "moe_grouped_down_tc_" : "moe_grouped_down_") + (ex.w2.bf16 ? "bf16" : "f32");
        Object[] upArgs = {ex.w1.buf, ex.w3.buf, x, groupInts, tokenOffset, act, upN, inter, hidden};
        Object[] downArgs = {ex.w2.buf, act, groupInts, pairOffset, pairs, downN, inter, hidden};
        if (tc) {
            launch(tcKernel(up), up, (long) tiles * upN * NT, upArgs);
            launch(tcKernel(down), down, (long) tiles * downN * NT, downArgs);
        } else {
            launch(up, (long) tiles * upN * NT, upArgs);
            launch(down, (long) tiles * downN * NT, downArgs);
        }
    }

    @Override
    public synchronized void siluMul(Buffer g, Buffer u, long n) {
        check(g, 0, n);
        check(u, 0, n);
        if (n > 0) launch("silu_mul", groups(n) * NT, g, u, n);
    }

    /**
     * {@code y[n, out] = x[n, in] . W^T} from and to host arrays, the weight on the device: the array interface's
     * product ({@link OpenClOps#matmul}) when this context holds the model's weights, so that they are placed once.
     * The activations go through staging buffers kept between calls.
     */
    public synchronized void matmul(float[] x, int n, Tensor w, float[] y) {
        Weight p = weight(w);
        long in = p.cols, out = p.rows;
        if (x.length < n * in || y.length < n * out) {
            throw new IndexOutOfBoundsException("x [" + x.length + "] or y [" + y.length + "] too short for " + n
                    + " rows of " + w);
        }
        if (n == 0) return;
        hostX = scratch(hostX, n * in);
        hostY = scratch(hostY, n * out);
        write(hostX, 0, x, 0, (int) (n * in));
        matmul(hostX, n, w, hostY);
        read(hostY, 0, y, 0, (int) (n * out));
    }

    private ClBuffer hostX, hostY;

    /** {@code b} if it holds {@code length} elements, else a larger replacement (grown by half, to amortise). */
    private ClBuffer scratch(ClBuffer b, long length) {
        if (b != null && b.length() >= length) return b;
        if (b != null) b.close();
        return floats(Math.max(length, b == null ? 0 : b.length() + b.length() / 2));
    }

    /** Frees these weights' device copies (a layer moved elsewhere; benchmarks between cases). */
    public synchronized void evict(Collection<Tensor> ws) {
        for (Tensor w : ws) {
            Weight p = weights.remove(w);
            if (p != null) p.buf.close();
        }
    }

    @Override
    public synchronized void rmsNorm(Buffer x, int rows, int dim, Buffer w, float eps, Buffer out) {
        check(x, 0, (long) rows * dim);
        check(out, 0, (long) rows * dim);
        if (rows > 0) launch("rms_norm", (long) rows * NT, x, w, out, dim, eps);
    }

    @Override
    public synchronized void residualNorm(Buffer x, float alpha, Buffer update, Buffer wts, int k, float beta, int rows,
                                          int dim, Buffer w, float eps, Buffer out) {
        if (wts == null && k != 1) throw new IllegalArgumentException("an unweighted update needs k = 1, got " + k);
        check(x, 0, (long) rows * dim);
        check(update, 0, (long) rows * k * dim);
        check(out, 0, (long) rows * dim);
        if (rows > 0) {
            launch("residual_norm", (long) rows * NT, x, alpha, update, wts != null ? wts : update, k, beta,
                    wts != null ? 1 : 0, w, eps, out, dim);
        }
    }

    @Override
    public synchronized void silu(Buffer x, long n) {
        check(x, 0, n);
        if (n > 0) launch("silu", groups(n) * NT, x, n);
    }

    @Override
    public synchronized void lightningStep(Buffer qkv, int row, int heads, int dim, Buffer decay, Buffer state,
                                           Buffer out) {
        long hd = (long) heads * dim;
        check(qkv, 3 * hd * row, 3 * hd);
        check(state, 0, hd * dim);
        check(out, hd * row, hd);
        launch("lightning_step", (long) heads * ceilDiv(dim, LS_COLS) * NT, qkv, 3 * hd * row, decay, state, out,
                hd * row, heads, dim);
    }

    @Override
    public synchronized void lightningScan(Buffer qkv, int rows, int heads, int dim, Buffer decay, Buffer state,
                                           Buffer out) {
        if (dim > DA_MAXD) throw new IllegalArgumentException("lightning scan takes D <= " + DA_MAXD + ", got " + dim);
        long hd = (long) heads * dim;
        check(qkv, 0, 3 * hd * rows);
        check(state, 0, hd * dim);
        check(out, 0, hd * rows);
        if (useTensorCores && rows > 0 && (dim == 32 || dim == 64 || dim == 128)) {
            lightningBlocks(qkv, rows, heads, dim, decay, state, out);
            return;
        }
        if (rows > 0) {
            launch("lightning_scan", (long) heads * ceilDiv(dim, LS_COLS) * NT, qkv, decay, state, out, rows, heads, dim);
        }
    }

    @Override
    public synchronized void normGate(Buffer o, int rows, int dim, Buffer w, float eps, Buffer gate) {
        check(o, 0, (long) rows * dim);
        check(gate, 0, (long) rows * dim);
        if (rows > 0) launch("norm_gate", (long) rows * NT, o, w, gate, dim, eps);
    }

    @Override
    public synchronized void rope(Buffer x, int rows, int heads, int dim, Buffer invFreq, int half, Buffer positions) {
        if (2 * half > dim) throw new IllegalArgumentException("rotary dims " + 2 * half + " > head dim " + dim);
        check(x, 0, (long) rows * heads * dim);
        long work = (long) rows * heads * half;
        if (work > 0) launch("rope", groups(work) * NT, x, invFreq, positions, rows, heads, dim, half);
    }

    /** The kernels of decode attention's first pass (all compute the same partials; the tests run each). */
    public enum AttentionKernel {
        /** BANDWIDTH where the shape fits it, else GENERAL. */
        AUTO(null),
        /** attn_split: any G <= 16, D <= 128; keys through local memory, 32 a tile. */
        GENERAL("attn_split"),
        /** attn_split_bw: G <= 8, D % 4 == 0; key and value rows read once, coalesced, 256 keys a tile (4x GENERAL on an H200). */
        BANDWIDTH("attn_split_bw");

        final String kernel;

        AttentionKernel(String kernel) { this.kernel = kernel; }
    }

    private AttentionKernel attentionKernel = AttentionKernel.AUTO;

    /** Forces one first-pass kernel for decode attention (tests, benchmarks); AUTO restores the default. */
    public synchronized void attentionKernel(AttentionKernel kernel) { this.attentionKernel = kernel; }

    /** Whether {@link #decodeAttention} takes this shape. */
    public static boolean attentionFits(int heads, int kvHeads, int dim) {
        return heads % kvHeads == 0 && heads / kvHeads <= DA_MAXG && dim <= DA_MAXD;
    }

    @Override
    public synchronized void decodeAttention(Buffer q, int row, int heads, int kvHeads, int dim, Buffer kCache,
                                             Buffer vCache, int len, Buffer out) {
        if (!attentionFits(heads, kvHeads, dim)) {
            throw new IllegalArgumentException("decode attention takes D <= " + DA_MAXD + " and H/KV <= " + DA_MAXG
                    + ", got H=" + heads + " KV=" + kvHeads + " D=" + dim);
        }
        if (len <= 0) throw new IllegalArgumentException("attention over " + len + " positions");
        long hd = (long) heads * dim, kvd = (long) kvHeads * dim;
        check(q, hd * row, hd);
        check(out, hd * row, hd);
        check(kCache, 0, len * kvd);
        check(vCache, 0, len * kvd);
        boolean fits = heads / kvHeads <= DB_G && dim % 4 == 0;
        AttentionKernel kernel = attentionKernel == AttentionKernel.AUTO
                ? (fits ? AttentionKernel.BANDWIDTH : AttentionKernel.GENERAL) : attentionKernel;
        if (kernel != AttentionKernel.GENERAL && !fits) {
            throw new IllegalArgumentException(kernel + " decode attention takes H/KV <= " + DB_G + " and D % 4 == 0");
        }
        boolean bandwidth = kernel != AttentionKernel.GENERAL;
        int[] split = bandwidth ? splits(len, kvHeads, 4 * computeUnits, NT, NT) : splits(len, kvHeads, 2 * computeUnits, DA_KEYS, 4 * DA_KEYS);
        int splitLen = split[0], splits = split[1];
        partials((long) kvHeads * splits * (heads / kvHeads) * (dim + 2));
        launch(kernel.kernel, (long) kvHeads * splits * NT, q, hd * row, kCache, vCache,
                attnPart, heads, kvHeads, dim, len, splitLen, splits, (float) (1.0 / Math.sqrt(dim)));
        launch("attn_combine", groups(hd) * NT, attnPart, out, hd * row, heads, kvHeads, dim, splits, 1);
    }

    @Override
    public synchronized void causalAttention(Buffer q, int rows, int heads, int kvHeads, int dim, Buffer kCache,
                                             Buffer vCache, int lenFirst, Buffer out) {
        if (lenFirst <= 0) throw new IllegalArgumentException("attention over " + lenFirst + " positions");
        if (useTensorCores && attentionKernel == AttentionKernel.AUTO && flashFits(heads, kvHeads, dim)) {
            flashAttention(q, rows, heads, kvHeads, dim, kCache, vCache, lenFirst, out);
            return;
        }
        boolean fits = heads % kvHeads == 0 && heads / kvHeads <= DB_G && dim % 4 == 0 && dim <= DA_MAXD;
        if (!fits || attentionKernel == AttentionKernel.GENERAL) {
            for (int t = 0; t < rows; t++) decodeAttention(q, t, heads, kvHeads, dim, kCache, vCache, lenFirst + t, out);
            return;
        }
        long hd = (long) heads * dim, kvd = (long) kvHeads * dim;
        int maxLen = lenFirst + rows - 1;
        check(q, 0, hd * rows);
        check(out, 0, hd * rows);
        check(kCache, 0, maxLen * kvd);
        check(vCache, 0, maxLen * kvd);
        // about 4 work-groups per compute unit over all rows: long prompts need no splits, the rows fill the device
        int[] split = splits(maxLen, kvHeads * rows, 4 * computeUnits, NT, NT);
        int splitLen = split[0], splits = split[1];
        partials((long) rows * kvHeads * splits * (heads / kvHeads) * (dim + 2));
        launch(AttentionKernel.BANDWIDTH.kernel, (long) rows * kvHeads * splits * NT, q, 0L, kCache, vCache, attnPart,
                heads, kvHeads, dim, lenFirst, splitLen, splits, (float) (1.0 / Math.sqrt(dim)));
        launch("attn_combine", groups(rows * hd) * NT, attnPart, out, 0L, heads, kvHeads, dim, splits, rows);
    }

    /** Tokens per block of the lightning block form on tensor cores (tensorcore.cl's LB). */
    static final int LB = 64;
    private ClBuffer linKv;

    /**
     * The lightning recurrence over a chunk in block form on tensor cores (same result as lightning_scan, products in
     * bf16): the per-block KV products (lin_kv), the scan of the states over the blocks (lin_states, which leaves the
     * state after the chunk in {@code state}), then each block's inter- and intra-block outputs (lin_out).
     */
    private void lightningBlocks(Buffer qkv, int rows, int heads, int dim, Buffer decay, Buffer state, Buffer out) {
        int blocks = ceilDiv(rows, LB);
        long need = (long) blocks * heads * dim * dim;
        if (linKv == null || linKv.length() < need) {
            if (linKv != null) linKv.close();
            linKv = floats(need);
        }
        launch(tcKernel("lin_kv_" + dim), "lin_kv_" + dim, (long) heads * blocks * NT, qkv, decay, linKv, rows, heads);
        launch(tcKernel("lin_states"), "lin_states", groups((long) heads * dim * dim) * NT, linKv, decay, state, rows,
                heads, dim);
        launch(tcKernel("lin_out_" + dim), "lin_out_" + dim, (long) heads * blocks * NT, qkv, decay, linKv, out, rows,
                heads);
    }

    private MemorySegment tcKernel(String name) {
        return tcKernels.computeIfAbsent(name, kn -> Cl.createKernel(tcProgram, kn));
    }

    /** Query rows per work-group of the tensor-core flash attention (tensorcore.cl's FQ). */
    static final int FQ = 128;

    /** Whether the tensor-core flash attention takes this shape: D of 32, 64 or 128 (one kernel each). */
    static boolean flashFits(int heads, int kvHeads, int dim) {
        return heads % kvHeads == 0 && (dim == 32 || dim == 64 || dim == 128);
    }

    /** Causal prefill attention of {@code rows} query rows in one launch on tensor cores (flash_tc_D). */
    private void flashAttention(Buffer q, int rows, int heads, int kvHeads, int dim, Buffer kCache, Buffer vCache,
                                int lenFirst, Buffer out) {
        long hd = (long) heads * dim, kvd = (long) kvHeads * dim;
        int maxLen = lenFirst + rows - 1;
        check(q, 0, hd * rows);
        check(out, 0, hd * rows);
        check(kCache, 0, maxLen * kvd);
        check(vCache, 0, maxLen * kvd);
        if (rows == 0) return;
        String name = "flash_tc_" + dim;
        MemorySegment k = tcKernels.computeIfAbsent(name, kn -> Cl.createKernel(tcProgram, kn));
        launch(k, name, (long) heads * ceilDiv(rows, FQ) * NT, q, kCache, vCache, out, rows, heads, kvHeads, lenFirst,
                (float) (1.0 / Math.sqrt(dim)));
    }

    /** Room for {@code length} floats of attention partials (o, m, l per split) in attnPart, grown when short. */
    private void partials(long length) {
        if (attnPart != null && attnPart.length() >= length) return;
        if (attnPart != null) attnPart.close();
        attnPart = floats(Math.max(length, 1 << 16));
    }

    /**
     * Keys per split (a multiple of {@code tile}, at least {@code minLen}) and the split count: about {@code groups}
     * work-groups in all (a few per compute unit, so that loads of one hide the math of another), without splits so
     * short that their fixed cost (the queries' load, the partials' write) dominates.
     */
    static int[] splits(int len, int kvHeads, int groups, int tile, int minLen) {
        int want = Math.max(1, groups / kvHeads);
        int splitLen = Math.max(minLen, ceilDiv(ceilDiv(len, want), tile) * tile);
        return new int[]{splitLen, ceilDiv(len, splitLen)};
    }

    @Override
    public synchronized void argmaxRows(Buffer logits, int rows, int V, Buffer out) {
        check(logits, 0, (long) rows * V);
        check(out, 0, rows);
        if (rows > 0) launch("argmax_rows", (long) rows * NT, logits, V, out);
    }

    @Override
    public synchronized void route(Buffer logits, int rows, int experts, int k, Buffer ids, Buffer wts) {
        if (experts > ROUTE_MAX_EXPERTS || k > experts || k <= 0) {
            throw new IllegalArgumentException("router takes k <= E <= " + ROUTE_MAX_EXPERTS + ", got E=" + experts + " k=" + k);
        }
        check(logits, 0, (long) rows * experts);
        check(ids, 0, (long) rows * k);
        check(wts, 0, (long) rows * k);
        if (rows > 0) launch("route", groups(rows) * NT, logits, ids, wts, rows, experts, k);
    }

    @Override
    public synchronized void runExperts(ExpertSet set, Buffer x, int rows, int k, Buffer ids, Buffer act, Buffer out) {
        Experts ex = (Experts) set;
        int inter = ex.w1.rows, hidden = ex.w1.cols;
        check(x, 0, (long) rows * hidden);
        check(ids, 0, (long) rows * k);
        check(act, 0, (long) rows * k * inter);
        check(out, 0, (long) rows * k * hidden);
        String up = "moe_gate_up_" + family(ex.w1.bf16, hidden), down = "moe_down_" + family(ex.w2.bf16, inter);
        String tcUp = decodeTcKernel("dtc_gate_up", ex.w1.bf16, hidden), tcDown = decodeTcKernel("dtc_down", ex.w2.bf16, inter);
        for (int r0 = 0; r0 < rows; r0 += MAXN) {
            int m = Math.min(MAXN, rows - r0);
            if (tcUp != null && tcDown != null) { // decode_tc.cl (-Dlightmesh.decode.tc): 8 rows, so <= 8 pairs an expert
                launchDtc(tcUp, (long) ex.count * ceilDiv(inter, DecodeTc.ROWS) * NT, ex.w1.buf, ex.w3.buf, x, ids, act,
                        r0, m, k, inter, hidden);
                launchDtc(tcDown, (long) ex.count * ceilDiv(hidden, DecodeTc.ROWS) * NT, ex.w2.buf, act, ids, out, r0,
                        m, k, inter, hidden);
                continue;
            }
            launch(up, (long) ex.count * ceilDiv(inter, MV_ROWS) * NT, ex.w1.buf, ex.w3.buf, x, ids, act, r0, m, k,
                    inter, hidden);
            launch(down, (long) ex.count * ceilDiv(hidden, MV_ROWS) * NT, ex.w2.buf, act, ids, out, r0, m, k, inter,
                    hidden);
        }
    }

    // ---- launching ---------------------------------------------------------------------------------------------------

    static long groups(long work) { return (work + NT - 1) / NT; }

    static int ceilDiv(int a, int b) { return (a + b - 1) / b; }

    /** The program of a kernel: decode_v3.cl's for the d3_ kernels, resident.cl's for the rest. */
    private MemorySegment programOf(String kernel) {
        if (!kernel.startsWith("d3_")) return program;
        if (v3Program == null) throw new IllegalStateException(kernel + ": decode_v3.cl is not built (" + v3WhyNot + ")");
        return v3Program;
    }

    /** Sets the arguments (buffers, Integer, Long, Float) and enqueues a 1-D launch of work-groups of NT. */
    private void launch(String kernel, long global, Object... args) {
        if (closed) throw new IllegalStateException("ResidentOps is closed");
        launch(kernels.computeIfAbsent(kernel, n -> Cl.createKernel(programOf(n), n)), kernel, global, args);
    }

    private void launch(MemorySegment k, String kernel, long global, Object... args) {
        launchLocal(k, kernel, global, NT, args);
    }

    /** As above with work-groups of {@code local} work-items. */
    void launchLocal(MemorySegment k, String kernel, long global, int local, Object... args) {
        if (closed) throw new IllegalStateException("ResidentOps is closed");
        long t0 = profileSync ? System.nanoTime() : 0;
        for (int i = 0; i < args.length; i++) {
            Object a = args[i];
            switch (a) {
                case ClBuffer b -> {
                    argValue.set(ValueLayout.ADDRESS, 0, b.mem());
                    Cl.setArg(k, i, 8, argValue);
                }
                case Integer v -> {
                    argValue.set(ValueLayout.JAVA_INT, 0, v);
                    Cl.setArg(k, i, 4, argValue);
                }
                case Long v -> {
                    argValue.set(ValueLayout.JAVA_LONG, 0, v);
                    Cl.setArg(k, i, 8, argValue);
                }
                case Float v -> {
                    argValue.set(ValueLayout.JAVA_FLOAT, 0, v);
                    Cl.setArg(k, i, 4, argValue);
                }
                default -> throw new IllegalArgumentException(kernel + " argument " + i + ": " + a);
            }
        }
        enqueue(k, kernel, global, local, t0);
    }

    /**
     * -Dlightmesh.opencl.profile=true: every launch waits for its kernel, and the time (host clock, launch included)
     * is added up per kernel name. Slows everything: for finding where the time goes, not for throughput figures.
     * -Dlightmesh.opencl.profile=events: each launch's event carries the device clock's start and end of the kernel,
     * read at the next sync of the queue (a read back, a finish); nothing waits more than it would without the profile.
     * {@link #kernelTimes()} takes the table; close prints what is left.
     */
    private final boolean profileSync;
    private final boolean profileEvents;
    private final KernelProfile profile = new KernelProfile();

    @Override
    public synchronized KernelTimes kernelTimes() {
        if (!profileSync && !profileEvents) return null;
        if (profileEvents && !closed) {
            Cl.finish(queue);
            harvest();
        }
        return profile.take("OpenCL kernel profile (" + name + ", " + (profileEvents ? "device clock of each launch's event"
                : "host clock with a clFinish after every launch") + "):");
    }

    private long launches;

    /** Kernel launches so far (benchmarks, and tests that count a step's). */
    @Override
    public synchronized long launches() { return launches; }

    /**
     * A launch through a kernel object of its own for {@code site} (a layer's weight, say): its arguments stay set
     * between calls, and only those that changed since the last launch at that site are set again, so a decode step
     * that repeats the same launches each step costs little more than the enqueues.
     */
    void launchAt(String kernel, Object site, long global, Object... args) { launchAt(programOf(kernel), kernel, site, global, args); }

    /** As above for a kernel of {@code prog} (its name unique over the programs: the site's key). */
    private void launchAt(MemorySegment prog, String kernel, Object site, long global, Object... args) {
        if (closed) throw new IllegalStateException("ResidentOps is closed");
        Site key = new Site(kernel, site);
        SiteKernel sk = sites.get(key);
        if (sk == null) {
            sk = new SiteKernel(Cl.createKernel(prog, kernel), new long[args.length], new boolean[args.length]);
            sites.put(key, sk);
        }
        for (int i = 0; i < args.length; i++) {
            Object a = args[i];
            long bits;
            long size;
            switch (a) {
                case ClBuffer b -> {
                    bits = b.mem().address();
                    argValue.set(ValueLayout.ADDRESS, 0, b.mem());
                    size = 8;
                }
                case Integer v -> {
                    bits = v;
                    argValue.set(ValueLayout.JAVA_INT, 0, v);
                    size = 4;
                }
                case Long v -> {
                    bits = v;
                    argValue.set(ValueLayout.JAVA_LONG, 0, v);
                    size = 8;
                }
                case Float v -> {
                    bits = Float.floatToRawIntBits(v);
                    argValue.set(ValueLayout.JAVA_FLOAT, 0, v);
                    size = 4;
                }
                default -> throw new IllegalArgumentException(kernel + " argument " + i + ": " + a);
            }
            if (sk.set[i] && sk.bits[i] == bits) continue;
            Cl.setArg(sk.kernel, i, size, argValue);
            sk.bits[i] = bits;
            sk.set[i] = true;
        }
        enqueue(sk.kernel, kernel, global, NT, profileSync ? System.nanoTime() : 0);
    }

    /** Enqueues one launch of work-groups of {@code local}; in a profile mode, times it (see {@link #profile}). */
    private void enqueue(MemorySegment k, String kernel, long global, long local, long t0) {
        globalSize.set(ValueLayout.JAVA_LONG, 0, global);
        localSize.set(ValueLayout.JAVA_LONG, 0, local);
        long bytes = nextBytes;
        nextBytes = 0;
        if (profileEvents) {
            if (pending.size() >= MAX_PENDING) {  // a long run with no read back: sync and take the times so far
                Cl.finish(queue);
                harvest();
            }
            Cl.enqueue(queue, k, globalSize, localSize, kernel, eventSlot);
            pending.add(new Pending(eventSlot.get(ValueLayout.ADDRESS, 0), kernel, bytes));
        } else {
            Cl.enqueue(queue, k, globalSize, localSize, kernel);
        }
        launches++;
        if (profileSync) {
            Cl.finish(queue);
            profile.add(kernel, System.nanoTime() - t0, bytes);
        }
    }

    /**
     * The bytes the next launch streams from device memory (its weights), for the profile's GB/s column; launchers
     * that know them call this just before the launch. Ignored outside a profile mode.
     */
    void streams(long bytes) { nextBytes = bytes; }

    private long nextBytes;

    /** A launch whose event's times are not read yet. */
    private record Pending(MemorySegment event, String kernel, long bytes) {}

    private static final int MAX_PENDING = 1 << 16;
    private final java.util.ArrayList<Pending> pending = new java.util.ArrayList<>();
    private final MemorySegment eventSlot = arena.allocate(ValueLayout.ADDRESS);
    private final MemorySegment eventScratch = arena.allocate(8, 8);
    private final long[] startEnd = new long[2];

    /**
     * After a sync of the queue (a blocking read, a finish): every pending launch is complete; adds their device
     * times to the profile, and the window from the first start to the last end, and releases the events.
     */
    private void harvest() {
        if (pending.isEmpty()) return;
        long first = Long.MAX_VALUE, last = Long.MIN_VALUE;
        for (Pending p : pending) {
            Cl.eventTimes(p.event(), eventScratch, startEnd);
            Cl.releaseEvent(p.event());
            profile.add(p.kernel(), startEnd[1] - startEnd[0], p.bytes());
            first = Math.min(first, startEnd[0]);
            last = Math.max(last, startEnd[1]);
        }
        pending.clear();
        profile.window(last - first);
    }

    /** A launch site: the kernel and the object it runs for (compared by identity). */
    private record Site(String kernel, Object owner) {
        @Override
        public boolean equals(Object o) { return o instanceof Site s && s.kernel.equals(kernel) && s.owner == owner; }

        @Override
        public int hashCode() { return kernel.hashCode() * 31 + System.identityHashCode(owner); }
    }

    /** A site's kernel object and the argument values last set on it. */
    private record SiteKernel(MemorySegment kernel, long[] bits, boolean[] set) {}

    private final Map<Site, SiteKernel> sites = new HashMap<>();

    @Override
    public synchronized ClBuffer view(Buffer parent, long off, long length) {
        check(parent, off, length);
        if (off % viewAlign != 0) throw new IllegalArgumentException("view offset " + off + " is not a multiple of " + viewAlign);
        return new ClBuffer(length, Cl.createSubBuffer(cl(parent).mem(), 4 * off, 4 * Math.max(1, length)));
    }

    @Override
    public long viewAlignment() { return viewAlign; }

    /** -Dlightmesh.decode.fused=false: no fused decode kernels (the per-operation step, to compare). */
    static final boolean FUSED = !"false".equalsIgnoreCase(System.getProperty("lightmesh.decode.fused", "true"));

    /**
     * The fused step's form: tails in the output and expert launches (five launches a layer) or one group per row for
     * the norms and the router (seven, the default); returns the form now. Tests and benchmarks.
     */
    public synchronized boolean fusedTails(boolean on) {
        FusedOps f = (FusedOps) fused();
        if (f == null) return false;
        f.tails(on);
        return f.tails();
    }

    @Override
    public synchronized io.lightmesh.engine.backend.FusedDecode fused() {
        if (!FUSED) return null;
        if (fused == null) {
            fused = new FusedOps(this);
            fused.kernels(v2);
            fused.warpRows(warpRows);
        }
        return fused;
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        Cl.finish(queue);
        for (ClBuffer b : live.toArray(new ClBuffer[0])) b.close();
        weights.clear();
        harvest();
        if ((profileSync || profileEvents) && !profile.isEmpty()) System.err.print(kernelTimes().table());
        for (MemorySegment k : kernels.values()) Cl.releaseKernel(k);
        kernels.clear();
        for (SiteKernel k : sites.values()) Cl.releaseKernel(k.kernel());
        sites.clear();
        releaseTensorCores();
        releaseDecodeTc();
        if (v3Program != null) Cl.releaseProgram(v3Program);
        if (routeKernels != null) routeKernels.release();
        routeKernels = null;
        Cl.releaseProgram(program);
        Cl.releaseQueue(queue);
        Cl.releaseContext(context);
        arena.close();
        closed = true;
    }
}
