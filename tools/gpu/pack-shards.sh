#!/usr/bin/env bash
# Packs one folder from which the GPU machine runs every step of run-gpu.sh but the whole embedded mesh's (model,
# serve, pool: pack-mesh.sh): ShardDecodeBench (`shards`: the engine with its experts on expert shards served over
# loopback gRPC in the same process, against experts in-process), EngineBench (`engine`), KernelBench (`bench`), the
# engine's OpenCL tests (`tests`) and the python steps (torch, peer, fixtures-bf16), under what the device tool
# carries beside the checkout (64 MiB in all; the checkout is ~25 MiB on disk: this pack must stay under ~38 MiB):
#   rt.tar.xz   jdk/ (jlink, modules uncompressed so that xz packs them), lib/ (the engine, proto, mesh-common,
#               expert-service and bench jars, mesh-launcher's classes, gRPC, protobuf, picocli, OpenTelemetry's API,
#               Jackson, Aparapi: each jar rewritten with its entries stored and native libraries for linux/x86_64
#               only, jar_store.py), test-lib/ (the engine's test classes jar, the JUnit console launcher and
#               opencl-test-classes.txt, exactly as pack.sh makes them), native/ (this machine's ICD loader, a fallback)
#   tools/      this folder's scripts and tools/reference/*.py; run-gpu.sh unpacks rt.tar.xz to /tmp/lightmesh-rt
# The whole embedded mesh (Kafka broker, Quarkus-free classpath) is pack-mesh.sh's, ~36 MiB on its own.
# Usage: [MVN_FLAGS=-o] [NO_BUILD=1] tools/gpu/pack-shards.sh [DEST]   (default .runtime-shards/; NO_BUILD=1 packs
#        the jars of an earlier `mvn -pl mesh-launcher,bench -am package`, whose test classes the engine's tests jar takes)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/java-env.sh"
DEST="$(realpath -m "${1:-$ROOT/.runtime-shards}")"
LIMIT_MIB="${LIMIT_MIB:-38}"
JUNIT_CONSOLE=org.junit.platform:junit-platform-console-standalone:6.0.3
# jdk.management: the process CPU time ShardDecodeBench prints (com.sun.management.OperatingSystemMXBean)
MODULES=java.base,java.logging,java.management,jdk.management,java.xml,java.naming,jdk.unsupported,jdk.incubator.vector
# The runtime jars ShardDecodeBench, EngineBench and KernelBench load (mesh-launcher's dependencies hold the bench's);
# proto-google-common-protos (gRPC's rich error details, 7.7 MB) is left out: no class of it is loaded (pack-mesh.sh).
KEEP='^(lightmesh-(engine|proto|mesh-common|expert-service)|grpc-(api|context|core|stub|protobuf|protobuf-lite|netty-shaded|util)-|protobuf-java-4|guava|failureaccess|perfmark|opentelemetry-(api|context|common)-1|aparapi|bcel|jackson-(core|databind|annotations)-|error_prone|jspecify|picocli-)'
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cd "$ROOT"
rm -rf "$DEST"
mkdir -p "$DEST/tools/reference" "$STAGE/native" "$STAGE/test-lib" "$STAGE/jars"

if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "pack-shards: building mesh-launcher and bench (and the engine's test classes)"
  mvn ${MVN_FLAGS:-} -q -B -ntp -pl mesh-launcher,bench -am package -DskipTests
fi
jars=(bench/target/lightmesh-bench-*.jar)
for j in mesh-launcher/target/lib/*.jar; do basename "$j" | grep -Eq "$KEEP" && jars+=("$j"); done
# mesh-launcher's own classes without lightmesh-mesh.jar's manifest Class-Path (lib/ jars this pack leaves out)
"$JAVA_HOME/bin/jar" --create --file "$STAGE/jars/lightmesh-launcher-classes.jar" -C mesh-launcher/target/classes .
jars+=("$STAGE/jars/lightmesh-launcher-classes.jar")
python3 tools/gpu/jar_store.py "$STAGE/lib" "${jars[@]}"

# the engine's tests, as pack.sh packs them (run-gpu.sh tests reads these three names)
(cd engine/target/test-classes && "$JAVA_HOME/bin/jar" --create --file "$STAGE/jars/lightmesh-engine-tests.jar" . \
  && find . -name '*Test.class' | grep -E '(opencl/OpenCl[A-Za-z]*|/Backends|model/Resident[A-Za-z]*|model/FusedDecode|model/BackendFixtures)Test\.class$' | sed 's|^\./||; s|\.class$||; s|/|.|g' \
  > "$STAGE/test-lib/opencl-test-classes.txt")
mvn ${MVN_FLAGS:-} -q -B -ntp dependency:copy -Dartifact="$JUNIT_CONSOLE" -DoutputDirectory="$STAGE/jars"
python3 tools/gpu/jar_store.py "$STAGE/test-lib" "$STAGE/jars/lightmesh-engine-tests.jar" "$STAGE"/jars/junit-platform-console-standalone-*.jar

echo "pack-shards: jlink $MODULES"
"$JAVA_HOME/bin/jlink" --add-modules "$MODULES" --strip-debug --no-header-files --no-man-pages --compress zip-0 --output "$STAGE/jdk"
strip --strip-unneeded "$STAGE"/jdk/lib/server/libjvm.so "$STAGE"/jdk/lib/*.so
for lib in /usr/lib/x86_64-linux-gnu/libOpenCL.so.1; do [ -e "$lib" ] && cp -L "$lib" "$STAGE/native/"; done
cp tools/gpu/*.sh tools/gpu/*.py "$DEST/tools/"
cp tools/reference/*.py "$DEST/tools/reference/"   # fixtures-bf16 loads them
echo "pack-shards: xz ($(du -sm "$STAGE" | cut -f1) MiB)"
tar -C "$STAGE" -cf - jdk lib test-lib native | xz -9 -T2 > "$DEST/rt.tar.xz"
size=$(du -sm "$DEST" | cut -f1)
echo "pack-shards: $DEST is ${size} MiB"
if [ "$size" -gt "$LIMIT_MIB" ]; then
  echo "pack-shards: over the ${LIMIT_MIB} MiB left beside the checkout in the 64 MiB the device tool carries" >&2; exit 1
fi
