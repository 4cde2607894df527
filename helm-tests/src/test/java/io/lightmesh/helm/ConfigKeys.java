package io.lightmesh.helm;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithName;

import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;

/**
 * The keys of a service's {@code @ConfigMapping} interface, found by reflection (so keys other changes add are known
 * without editing this test): a method's name in kebab case under the mapping's prefix ({@code maxInFlight} ->
 * {@code lightmesh.max-in-flight}), {@code @WithName} honoured, nested groups (interfaces of the project) walked.
 */
final class ConfigKeys {
    private ConfigKeys() {}

    static Set<String> of(Class<?> mapping) {
        ConfigMapping m = mapping.getAnnotation(ConfigMapping.class);
        if (m == null) throw new IllegalArgumentException(mapping + " is not a @ConfigMapping");
        Set<String> keys = new TreeSet<>();
        walk(mapping, m.prefix(), keys);
        return keys;
    }

    private static void walk(Class<?> type, String prefix, Set<String> keys) {
        for (Method method : type.getMethods()) {
            if (method.isDefault() || Modifier.isStatic(method.getModifiers()) || method.getParameterCount() > 0) continue;
            WithName wn = method.getAnnotation(WithName.class);
            String key = prefix + "." + (wn != null ? wn.value() : kebab(method.getName()));
            Class<?> r = method.getReturnType();
            if (r.isInterface() && r.getName().startsWith("io.lightmesh")) walk(r, key, keys);
            else keys.add(key);
        }
    }

    static String kebab(String camel) {
        return camel.replaceAll("([a-z0-9])([A-Z])", "$1-$2").toLowerCase(Locale.ROOT);
    }

    /** The environment variable Quarkus reads a key from: dots and dashes to underscores, upper case. */
    static String env(String key) {
        return key.replaceAll("[.\\-]", "_").toUpperCase(Locale.ROOT);
    }
}
