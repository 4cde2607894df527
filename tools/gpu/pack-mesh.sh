#!/usr/bin/env bash
# Packs the whole embedded mesh (bench-serve, bench-pool: a KRaft Kafka broker child process, router, prefill and
# decode workers, expert shards, all on the OpenCL backend or the CPU) for the GPU machine, under what the device
# tool carries beside the checkout (64 MiB in all; the checkout itself is ~25 MiB on disk):
#   rt.tar.xz   jdk/ (jlink, modules uncompressed so that xz packs them), lib/ (lightmesh-mesh.jar and its runtime
#               dependencies, Kafka included, each jar rewritten with its entries stored and native libraries for
#               linux/x86_64 only: jar_store.py), native/ (this machine's ICD loader, a fallback)
#   tools/      this folder's scripts; run-gpu.sh unpacks rt.tar.xz to /tmp/lightmesh-rt once per pack
# Deflated jars barely shrink under xz; stored ones share one xz dictionary: 95 MiB of jars become ~27 MiB.
# Usage: [MVN_FLAGS=-o] [NO_BUILD=1] [TESTS=1] tools/gpu/pack-mesh.sh [DEST]   (default .runtime-mesh/; NO_BUILD=1
#        packs the jars of an earlier `mvn -pl mesh-launcher,bench -am package`; TESTS=1 adds test-lib/ as
#        pack-shards.sh makes it, so that one call runs the engine's OpenCL tests beside the mesh, ~3 MiB more)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/java-env.sh"
DEST="$(realpath -m "${1:-$ROOT/.runtime-mesh}")"
LIMIT_MIB="${LIMIT_MIB:-38}"
# Kafka needs java.naming, java.security.sasl/jgss (its network layer) and java.management (metrics), its log4j-core
# java.desktop (java.beans: without it the broker's storage format dies with NoClassDefFoundError); jdk.management
# for the OS figures of the JVM's MXBeans; the engine jdk.incubator.vector.
MODULES=java.base,java.logging,java.management,java.naming,java.xml,java.desktop,java.security.sasl,java.security.jgss,jdk.management,jdk.unsupported,jdk.incubator.vector
# Jars from which no class was loaded by bench-serve (experts on shards, OpenCL on PoCL), bench-pool or their
# Kafka broker child processes (-Xlog:class+load, 2026-12-03), left out for room: vert.x and its unshaded netty (the
# HTTP front is off in the benches: --http-port -1), the OpenAI API and client SDK it serves, the OTLP exporters and
# their okhttp/okio/kotlin (nothing is exported in a bench), scala-reflect, jose4j (Kafka's OAuth), YAML/CSV/gson.
# proto-google-common-protos (gRPC's rich error details, which no LightMesh code uses), the commons-validator
# dependencies its two validators Kafka calls do not need. Kept though unloaded there: Kafka's compression codecs,
# caffeine, hash4j: paths the benches may take on another machine. EXCLUDE='^$' keeps every jar.
EXCLUDE="${EXCLUDE:-^(vertx-|netty-(buffer|codec|common|handler|resolver|transport|tcnative)|lightmesh-(openai-api|client-sdk)-|opentelemetry-exporter-|okhttp|okio|kotlin-stdlib|scala-reflect|jose4j|snakeyaml|gson|jackson-dataformat-csv|proto-google-common-protos|commons-(beanutils|digester|collections|logging))}"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cd "$ROOT"
rm -rf "$DEST"
mkdir -p "$DEST/tools" "$STAGE/native"

if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "pack-mesh: building"
  mvn ${MVN_FLAGS:-} -q -B -ntp -pl mesh-launcher,bench -am package -DskipTests
fi
# the bench jar too (EngineBench, KernelBench: run-gpu.sh's engine and bench steps), so that one call can measure the
# in-process engine beside the mesh from one pack; its only other dependency, picocli, is the launcher's as well
jars=(mesh-launcher/target/lightmesh-mesh.jar bench/target/lightmesh-bench-*.jar)
for j in mesh-launcher/target/lib/*.jar; do basename "$j" | grep -Eq "$EXCLUDE" || jars+=("$j"); done
python3 tools/gpu/jar_store.py "$STAGE/lib" "${jars[@]}"

if [ "${TESTS:-0}" = 1 ]; then   # the engine's OpenCL tests, exactly as pack-shards.sh packs them (run-gpu.sh tests)
  mkdir -p "$STAGE/test-lib" "$STAGE/jars"
  # without fixtures/ (9 MiB): the tests read them from the checkout's engine/src/test/resources, which travels anyway
  cp -r engine/target/test-classes "$STAGE/test-classes" && rm -rf "$STAGE/test-classes/fixtures"
  (cd "$STAGE/test-classes" && "$JAVA_HOME/bin/jar" --create --file "$STAGE/jars/lightmesh-engine-tests.jar" . \
    && find . -name '*Test.class' | grep -E '(opencl/OpenCl[A-Za-z]*|/Backends|model/Resident[A-Za-z]*|model/FusedDecode|model/BackendFixtures)Test\.class$' | sed 's|^\./||; s|\.class$||; s|/|.|g' \
    > "$STAGE/test-lib/opencl-test-classes.txt")
  mvn ${MVN_FLAGS:-} -q -B -ntp dependency:copy -Dartifact=org.junit.platform:junit-platform-console-standalone:6.0.3 -DoutputDirectory="$STAGE/jars"
  python3 tools/gpu/jar_store.py "$STAGE/test-lib" "$STAGE/jars/lightmesh-engine-tests.jar" "$STAGE"/jars/junit-platform-console-standalone-*.jar
  rm -rf "$STAGE/jars" "$STAGE/test-classes"
fi

echo "pack-mesh: jlink $MODULES"
# java.desktop is here for java.beans alone: its AWT, imaging, font and sound native libraries are left out (nothing
# headless loads them; jlink cannot leave out the module's exported packages, so its classes stay), ~2 MiB packed.
"$JAVA_HOME/bin/jlink" --add-modules "$MODULES" --strip-debug --no-header-files --no-man-pages --compress zip-0 --output "$STAGE/jdk"
rm -f "$STAGE"/jdk/lib/lib{awt,awt_headless,awt_xawt,fontmanager,javajpeg,jawt,jsound,lcms,mlib_image,splashscreen}.so
strip --strip-unneeded "$STAGE"/jdk/lib/server/libjvm.so "$STAGE"/jdk/lib/*.so
for lib in /usr/lib/x86_64-linux-gnu/libOpenCL.so.1; do [ -e "$lib" ] && cp -L "$lib" "$STAGE/native/"; done
cp tools/gpu/*.sh tools/gpu/*.py "$DEST/tools/"
echo "pack-mesh: xz ($(du -sm "$STAGE" | cut -f1) MiB)"
tar -C "$STAGE" -cf - jdk lib native $([ -d "$STAGE/test-lib" ] && echo test-lib) | xz -9 -T0 > "$DEST/rt.tar.xz"
size=$(du -sm "$DEST" | cut -f1)
echo "pack-mesh: $DEST is ${size} MiB"
if [ "$size" -gt "$LIMIT_MIB" ]; then
  echo "pack-mesh: over the ${LIMIT_MIB} MiB left beside the checkout in the 64 MiB the device tool carries" >&2; exit 1
fi
