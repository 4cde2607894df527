package io.lightmesh.helm;

import java.util.List;

/** What the images (mvn -Pimages package: Jib, the parent pom's "images" profile) are built to run. */
final class Images {
    private Images() {}

    /**
     * The entrypoint of every service image, as the parent pom's Jib configuration writes it: the JVM flags that
     * ./lightmesh uses, DNS answers cached 5 s (discovery re-resolves headless Services), the Quarkus fast-jar.
     */
    static final List<String> ENTRYPOINT = List.of("java", "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
            "--sun-misc-unsafe-memory-access=allow", "-Dsun.net.inetaddr.ttl=5", "-jar", "/app/quarkus-run.jar");
}
