package io.lightmesh.engine.backend.opencl;

import io.lightmesh.engine.backend.DeviceOps;

import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * Per-kernel times of the launches since the last {@link #take}: launches, total time, time a launch and, where the
 * launcher said how many bytes a launch streams, the rate. Two sources fill it: the device clock of each launch's
 * event (-Dlightmesh.opencl.profile=events: START to END of the kernel on the device, nothing waits) or the host
 * clock around a launch and a clFinish (-Dlightmesh.opencl.profile=true: each figure includes the sync). With events,
 * {@link #window} also adds up, per sync of the queue, the span from the first kernel's start to the last one's end,
 * so the table shows how much of that span the kernels leave idle (host and launch gaps).
 */
final class KernelProfile {
    /** Launches, nanoseconds and bytes streamed of one kernel name. */
    private static final class Row {
        long launches, nanos, bytes;
        boolean bytesKnown;
    }

    private final Map<String, Row> rows = new TreeMap<>();
    private long spanNanos, windows;

    /** Adds one launch of {@code kernel}: {@code nanos} long, {@code bytes} streamed (0: not known). */
    void add(String kernel, long nanos, long bytes) {
        Row r = rows.computeIfAbsent(kernel, k -> new Row());
        r.launches++;
        r.nanos += nanos;
        if (bytes > 0) {
            r.bytes += bytes;
            r.bytesKnown = true;
        }
    }

    /** Adds one sync window: the device clock from its first kernel's start to its last one's end. */
    void window(long spanNanos) {
        this.spanNanos += spanNanos;
        windows++;
    }

    boolean isEmpty() { return rows.isEmpty(); }

    /** The table of what was added since the last call, largest total first, and the sums; resets. */
    DeviceOps.KernelTimes take(String title) {
        long total = 0, launches = 0;
        for (Row r : rows.values()) {
            total += r.nanos;
            launches += r.launches;
        }
        StringBuilder sb = new StringBuilder(title).append('\n');
        sb.append(String.format(Locale.ROOT, "  %-24s %9s %12s %10s %6s %9s%n", "kernel", "launches", "total us",
                "us/launch", "share", "GB/s"));
        final long all = Math.max(1, total);
        rows.entrySet().stream().sorted((a, b) -> Long.compare(b.getValue().nanos, a.getValue().nanos)).forEach(e -> {
            Row r = e.getValue();
            String rate = r.bytesKnown && r.nanos > 0 ? String.format(Locale.ROOT, "%9.1f", (double) r.bytes / r.nanos) : "        -";
            sb.append(String.format(Locale.ROOT, "  %-24s %9d %12.1f %10.2f %5.1f%% %s%n", e.getKey(), r.launches,
                    r.nanos / 1e3, r.nanos / 1e3 / r.launches, 100.0 * r.nanos / all, rate));
        });
        sb.append(String.format(Locale.ROOT, "  %-24s %9d %12.1f", "all kernels", launches, total / 1e3));
        if (windows > 0) {
            sb.append(String.format(Locale.ROOT, "   (device busy %.1f%% of %.1f us from first start to last end over %d syncs)",
                    100.0 * total / Math.max(1, spanNanos), spanNanos / 1e3, windows));
        }
        sb.append('\n');
        DeviceOps.KernelTimes t = new DeviceOps.KernelTimes(sb.toString(), launches, total, windows > 0 ? spanNanos : -1);
        rows.clear();
        spanNanos = 0;
        windows = 0;
        return t;
    }
}
