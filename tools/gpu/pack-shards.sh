#!/usr/bin/env bash
# Packs what the GPU machine needs to run ShardDecodeBench (the engine with its experts on expert shards served over
# loopback gRPC in the same process, against experts in-process) on the OpenCL backend, under the 64 MiB that the
# device tool carries: rt.tar.xz (jdk/ from jlink, lib/ the engine, proto, mesh-common, expert-service and
# mesh-launcher classes with gRPC, protobuf and OpenTelemetry's API, native libraries for linux/x86_64 only) and
# tools/. The whole embedded mesh (Kafka broker, Quarkus-free classpath) packs to ~80 MiB, over the limit.
# Usage: [MVN_FLAGS=-o] tools/gpu/pack-shards.sh [DEST]   (default .runtime-shards/)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/java-env.sh"
DEST="$(realpath -m "${1:-$ROOT/.runtime-shards}")"
MODULES=java.base,java.logging,java.management,java.xml,java.naming,jdk.unsupported,jdk.incubator.vector
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cd "$ROOT"
rm -rf "$DEST"
mkdir -p "$DEST/tools" "$STAGE/lib" "$STAGE/all"

echo "pack-shards: building"
mvn ${MVN_FLAGS:-} -q -B -ntp -pl mesh-launcher -am package -DskipTests dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$STAGE/all"
(cd "$STAGE/all" && cp $(ls | grep -E '^(lightmesh-(engine|proto|mesh-common|expert-service)|grpc-(api|context|core|stub|protobuf|protobuf-lite|netty-shaded|util)-|protobuf-java-4|guava|failureaccess|perfmark|opentelemetry-(api|context|common)-1|aparapi|bcel|jackson-(core|databind|annotations)-|proto-google-common|error_prone|jspecify)') "$STAGE/lib/")
"$JAVA_HOME/bin/jar" --create --file "$STAGE/lib/lightmesh-launcher-classes.jar" -C mesh-launcher/target/classes .
jni=$(ls "$STAGE"/lib/aparapi-jni-*.jar)
(cd "$(mktemp -d)" && "$JAVA_HOME/bin/jar" --extract --file "$jni" && rm -rf win osx linux/libaparapi_x86.so \
  linux/libaparapi_armhf.so linux/libaparapi_aarch64.so && rm "$jni" && "$JAVA_HOME/bin/jar" --create --file "$jni" .)

echo "pack-shards: jlink $MODULES"
"$JAVA_HOME/bin/jlink" --add-modules "$MODULES" --strip-debug --no-header-files --no-man-pages --compress zip-0 --output "$STAGE/jdk"
strip --strip-unneeded "$STAGE"/jdk/lib/server/libjvm.so "$STAGE"/jdk/lib/*.so
mkdir -p "$STAGE/native"
for lib in /usr/lib/x86_64-linux-gnu/libOpenCL.so.1; do [ -e "$lib" ] && cp -L "$lib" "$STAGE/native/"; done
cp tools/gpu/*.sh tools/gpu/*.py "$DEST/tools/"
echo "pack-shards: xz"
tar -C "$STAGE" -cf - jdk lib native | xz -6 -T2 > "$DEST/rt.tar.xz"
size=$(du -sm "$DEST" | cut -f1)
echo "pack-shards: $DEST is ${size} MiB"
if [ "$size" -ge 50 ]; then echo "pack-shards: over the ~50 MiB left beside the checkout in the 64 MiB the device tool carries" >&2; exit 1; fi
