#!/usr/bin/env bash
# Packs what the GPU machine needs to run the OpenCL backend into one folder (default .runtime/, ignored by git),
# under the 64 MiB that the device tool carries:
#   jdk/        a JDK 25 runtime made by jlink with only the needed modules (--strip-debug --no-header-files
#               --no-man-pages --compress zip-9)
#   lib/        the engine and bench jars (KernelBench, EngineBench) and their runtime dependencies (maven-dependency-plugin
#               copy-dependencies)
#   test-lib/   the engine's test classes and the JUnit console launcher, to run the OpenCL kernel tests there
#   native/     the ICD loader libOpenCL.so.1 of this machine, a fallback if the GPU machine lacks one
#   tools/      this folder's scripts (and tools/reference/*.py, for fixtures-bf16)
# With --xz the folder holds only tools/ and rt.tar.xz (the rest, xz-compressed, about half the size), for when the
# checkout that travels beside it leaves less room; run-gpu.sh unpacks it to /tmp first.
# Usage: [MVN_FLAGS=-o] tools/gpu/pack.sh [--xz] [DEST]   (MVN_FLAGS: extra Maven flags, e.g. -o for offline)
set -euo pipefail
XZ=0
if [ "${1:-}" = "--xz" ]; then XZ=1; shift; fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/java-env.sh"
DEST="$(realpath -m "${1:-$ROOT/.runtime}")"
JUNIT_CONSOLE=org.junit.platform:junit-platform-console-standalone:6.0.3
MODULES=java.base,java.logging,java.management,java.xml,jdk.unsupported,jdk.incubator.vector

cd "$ROOT"
rm -rf "$DEST"
mkdir -p "$DEST/lib" "$DEST/test-lib" "$DEST/native" "$DEST/tools"

echo "pack: building the engine and bench jars and the engine's test classes"
# one reactor build: the bench's copy of its dependencies takes the engine jar this build packaged
mvn ${MVN_FLAGS:-} -q -B -ntp -pl bench -am -DskipTests package dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="$DEST/lib"
cp bench/target/lightmesh-bench-*.jar "$DEST/lib/"
(cd engine/target/test-classes && "$JAVA_HOME/bin/jar" --create --file "$DEST/test-lib/lightmesh-engine-tests.jar" . \
  && find . -name '*Test.class' | grep -E '(opencl/OpenCl[A-Za-z]*|/Backends|model/Resident[A-Za-z]*|model/FusedDecode|model/BackendFixtures)Test\.class$' | sed 's|^\./||; s|\.class$||; s|/|.|g' \
  > "$DEST/test-lib/opencl-test-classes.txt")
mvn ${MVN_FLAGS:-} -q -B -ntp dependency:copy -Dartifact="$JUNIT_CONSOLE" -DoutputDirectory="$DEST/test-lib"

echo "pack: jlink $MODULES"
COMPRESS=zip-9; [ "$XZ" = 1 ] && COMPRESS=zip-0   # xz packs uncompressed modules much better
"$JAVA_HOME/bin/jlink" --add-modules "$MODULES" --strip-debug --no-header-files --no-man-pages \
  --compress "$COMPRESS" --output "$DEST/jdk"
strip --strip-unneeded "$DEST"/jdk/lib/server/libjvm.so "$DEST"/jdk/lib/*.so

# aparapi-jni carries native libraries for every OS (19 MB); the GPU machine needs linux/x86_64 only.
jni=$(ls "$DEST"/lib/aparapi-jni-*.jar)
(cd "$(mktemp -d)" && "$JAVA_HOME/bin/jar" --extract --file "$jni" && rm -rf win osx linux/libaparapi_x86.so \
  linux/libaparapi_armhf.so linux/libaparapi_aarch64.so && rm "$jni" && "$JAVA_HOME/bin/jar" --create --file "$jni" .)

for lib in /usr/lib/x86_64-linux-gnu/libOpenCL.so.1; do [ -e "$lib" ] && cp -L "$lib" "$DEST/native/"; done
cp tools/gpu/*.sh tools/gpu/*.py "$DEST/tools/"
mkdir -p "$DEST/tools/reference" && cp tools/reference/*.py "$DEST/tools/reference/"   # fixtures-bf16 loads them

if [ "$XZ" = 1 ]; then
  echo "pack: xz"
  tar -C "$DEST" -cf - jdk lib test-lib native | xz -6 -T2 > "$DEST/rt.tar.xz"
  rm -rf "$DEST/jdk" "$DEST/lib" "$DEST/test-lib" "$DEST/native"
fi
size=$(du -sm "$DEST" | cut -f1)
echo "pack: $DEST is ${size} MiB"
if [ "$size" -ge 64 ]; then echo "pack: over the 64 MiB the device tool carries" >&2; exit 1; fi
