#!/bin/bash
# The prefix cache runs recorded in BENCHMARKS.md (needs: mvn -pl mesh-launcher -am package -DskipTests).
# Output in mesh-launcher/bench-results/<date>/prefix-cache-*.txt.
cd "$(dirname "$0")/../.."
source scripts/java-env.sh
D="mesh-launcher/bench-results/$(date -u +%F)"
mkdir -p "$D"
J="$JAVA_HOME/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xmx4g -cp mesh-launcher/target/lightmesh-mesh.jar"
run() { name=$1; shift; { echo "### $name"; echo "commit: $(git rev-parse --short HEAD)"; echo "cmd: $*"; echo "start: $(date -u +%FT%H:%M:%S) load $(cat /proc/loadavg)";
  $J "$@" 2>&1 | grep -v -E "^WARNING|INFO|^[A-Z][a-z]{2} [0-9]"; echo "end: $(date -u +%FT%H:%M:%S) load $(cat /proc/loadavg)"; } > "$D/$name.txt"; }
run prefix-cache-in-process-vector io.lightmesh.launcher.PrefixCacheBench --mode in-process --backend vector --prefix 4096 --repeat 3 --turns 8
run prefix-cache-mesh-vector io.lightmesh.launcher.PrefixCacheBench --mode mesh --backend vector --experts 2 --prefix 4096 --repeat 3 --turns 8
run prefix-cache-mesh-vector-no-cache io.lightmesh.launcher.PrefixCacheBench --mode mesh --backend vector --experts 2 --prefix 4096 --repeat 1 --turns 8 --prefix-cache-gib 0
