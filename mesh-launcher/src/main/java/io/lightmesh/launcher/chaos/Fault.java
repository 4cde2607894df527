package io.lightmesh.launcher.chaos;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * One fault of a chaos schedule, injected from outside the processes: {@code kill-<kind>} (SIGKILL, down for
 * {@code holdMs}, started again on the same ports), {@code freeze-<kind>} (SIGSTOP for {@code holdMs}, then SIGCONT:
 * a partition that heals), {@code slow-<kind>} (duty-cycled SIGSTOP/SIGCONT for {@code holdMs}: a process that runs
 * one slice in {@link #SLOW_PERIOD_MS} only), {@code restart-broker} (SIGKILL of the broker, restarted with its data
 * after {@code holdMs}), and {@code none} (a baseline). The victim is the {@code victim}-th process of the kind.
 *
 * <p>{@code failuresAllowed}: whether requests may fail (with a clear error) under this fault. Only a killed router
 * loses requests by design (its clients' connections go with it; a client sends again); everything else must lose
 * nothing.
 */
record Fault(String name, Action action, String kind, int victim, long holdMs) {
    enum Action { NONE, KILL, FREEZE, SLOW, RESTART_BROKER }

    /** The slow process's cycle: stopped for {@link #SLOW_STOPPED_MS} of every this many ms. */
    static final long SLOW_PERIOD_MS = 400, SLOW_STOPPED_MS = 300;

    boolean failuresAllowed() { return action == Action.KILL && kind.equals("router"); }

    /** The process this fault hits, e.g. decode-1; "broker"; null for none. */
    String target() {
        return switch (action) {
            case NONE -> null;
            case RESTART_BROKER -> "broker";
            default -> kind + "-" + victim;
        };
    }

    /**
     * Parses a schedule: comma-separated {@code name[:victim][@seconds]}, e.g.
     * {@code kill-decode:1@10,freeze-expert@30,restart-broker@5,none}.
     */
    static List<Fault> parse(String schedule, long defaultHoldMs) {
        List<Fault> out = new ArrayList<>();
        for (String item : schedule.split(",")) {
            String s = item.trim().toLowerCase(Locale.ROOT);
            if (s.isEmpty()) continue;
            long hold = defaultHoldMs;
            int at = s.indexOf('@');
            if (at >= 0) { hold = Math.round(Double.parseDouble(s.substring(at + 1)) * 1000); s = s.substring(0, at); }
            int victim = 0;
            int colon = s.indexOf(':');
            if (colon >= 0) { victim = Integer.parseInt(s.substring(colon + 1)); s = s.substring(0, colon); }
            if (s.equals("none")) { out.add(new Fault("none", Action.NONE, "", 0, hold)); continue; }
            if (s.equals("restart-broker")) { out.add(new Fault(s, Action.RESTART_BROKER, "broker", 0, hold)); continue; }
            int dash = s.indexOf('-');
            if (dash < 0) throw new IllegalArgumentException("chaos: fault '" + item + "' is not kill-|freeze-|slow-<kind>, restart-broker or none");
            Action a = switch (s.substring(0, dash)) {
                case "kill" -> Action.KILL;
                case "freeze" -> Action.FREEZE;
                case "slow" -> Action.SLOW;
                default -> throw new IllegalArgumentException("chaos: fault '" + item + "': action must be kill, freeze or slow");
            };
            String kind = s.substring(dash + 1);
            if (!List.of("router", "prefill", "decode", "expert").contains(kind)) {
                throw new IllegalArgumentException("chaos: fault '" + item + "': kind must be router, prefill, decode or expert");
            }
            out.add(new Fault(s + (colon >= 0 ? ":" + victim : ""), a, kind, victim, hold));
        }
        if (out.isEmpty()) throw new IllegalArgumentException("chaos: the schedule is empty");
        return out;
    }
}
