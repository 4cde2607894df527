package io.lightmesh.mesh;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.MetadataRecoveryStrategy;

import java.util.Map;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * How the mesh's Kafka clients (the router's producer and admin client, each prefill worker's consumer) wait while
 * the broker is away: bounded exponential backoff, so a broker restart costs a few reconnect attempts (and their log
 * lines), not one a second per client (the defaults), while a client still finds the broker at most ~6 s after it is
 * back.
 *
 * <ul>
 *   <li>{@code reconnect.backoff.ms} 100 doubling to {@code reconnect.backoff.max.ms} 5,000 (each +-20% jitter): the
 *       attempts to reach a broker come at ~0.1, 0.3, 0.7, 1.5, 3.1, 6.3 s and then every ~5 s; the defaults (50 ms
 *       to 1 s) try every second, each attempt logging "Node -1 disconnected" and "Connection to node ... could not
 *       be established" for every client.</li>
 *   <li>{@code retry.backoff.ms} 100 doubling to {@code retry.backoff.max.ms} 5,000 for metadata refreshes and
 *       retried requests (defaults 100 ms to 1 s): the first retry after a leader moves stays as fast as before.
 *       The admin client uses {@link #ADMIN_RETRY_MS} = 1,000 to start with: with calls waiting for a broker its I/O
 *       loop wakes every {@code retry.backoff.ms} and, under the rebootstrap strategy below, re-bootstraps (logging
 *       "Rebootstrapping with ...") once per waiting call each time; at 100 ms and with the router's health calls
 *       piling up that loop logged ~2,000 lines a second in a chaos run's 90 s broker restart. The router also
 *       bounds each admin call (so they do not pile up for {@code default.api.timeout.ms}, 60 s).</li>
 *   <li>{@code metadata.recovery.strategy} = rebootstrap (Kafka 4's default, set explicitly): when every broker the
 *       client knows is unreachable it goes back to {@code bootstrap.servers}, so a cluster whose brokers all come
 *       back at new addresses (pods rescheduled behind the bootstrap service name) is found again; with {@code none}
 *       a client would wait for the old addresses forever. {@code metadata.recovery.rebootstrap.trigger.ms} stays at
 *       Kafka's 300,000: it re-bootstraps a client that has reachable brokers but got no metadata from them for that
 *       long (KIP-1102), a rarer case than a restart, which the rule above covers at once.</li>
 * </ul>
 * A backoff cannot bound Kafka's "Rebootstrapping with ..." line: a client logs it (at INFO) at every pass of its
 * network loop while every broker it knows waits out a reconnect backoff, so a longer backoff means more of them
 * (measured in KafkaRestartTest: ~700 in a 12 s restart with the backoff alone). {@link #quietRebootstrapLog} lowers
 * those two loggers to WARNING unless the operator set their level; the per-attempt lines ("Node -1 disconnected",
 * "Connection to node ... could not be established") stay, as few as the backoff makes them.
 */
public final class KafkaBackoff {
    /** The first reconnect and retry backoff, and the most any one grows to. */
    public static final long FIRST_MS = 100, MAX_MS = 5_000;
    /** The admin client's first retry backoff: also how often its I/O loop wakes while calls wait for a broker. */
    public static final long ADMIN_RETRY_MS = 1_000;

    /** Kafka's loggers of the rebootstrap line, held so that a level set on them sticks (JUL keeps loggers weakly). */
    private static final Logger[] REBOOTSTRAP_LOGGERS = {Logger.getLogger("org.apache.kafka.clients.Metadata"),
            Logger.getLogger("org.apache.kafka.clients.admin.internals.AdminMetadataManager")};

    private KafkaBackoff() {}

    /**
     * Sets the loggers of Kafka's "Rebootstrapping with ..." line to WARNING, each unless its level is set already
     * (a {@code quarkus.log.category} or logging.properties entry wins). Through java.util.logging, which the services
     * (JBoss LogManager) and the CLI (slf4j-jdk14) route Kafka's SLF4J logging to.
     */
    public static void quietRebootstrapLog() {
        for (Logger l : REBOOTSTRAP_LOGGERS) {
            synchronized (l) {
                if (l.getLevel() == null) l.setLevel(Level.WARNING);
            }
        }
    }

    /** Adds the producer's or consumer's backoff settings to {@code props} and returns it. */
    public static <M extends Map<Object, Object>> M client(M props) {
        return put(props, FIRST_MS);
    }

    /** Adds the admin client's backoff settings to {@code props} and returns it. */
    public static <M extends Map<Object, Object>> M admin(M props) {
        return put(props, ADMIN_RETRY_MS);
    }

    private static <M extends Map<Object, Object>> M put(M props, long firstRetryMs) {
        props.put(CommonClientConfigs.RECONNECT_BACKOFF_MS_CONFIG, String.valueOf(FIRST_MS));
        props.put(CommonClientConfigs.RECONNECT_BACKOFF_MAX_MS_CONFIG, String.valueOf(MAX_MS));
        props.put(CommonClientConfigs.RETRY_BACKOFF_MS_CONFIG, String.valueOf(firstRetryMs));
        props.put(CommonClientConfigs.RETRY_BACKOFF_MAX_MS_CONFIG, String.valueOf(MAX_MS));
        props.put(CommonClientConfigs.METADATA_RECOVERY_STRATEGY_CONFIG, MetadataRecoveryStrategy.REBOOTSTRAP.name);
        return props;
    }
}
