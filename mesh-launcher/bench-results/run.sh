#!/bin/bash
# The runs recorded in BENCHMARKS.md (needs: mvn -pl mesh-launcher -am package -DskipTests). Output in bench-results/<date>/.
cd "$(dirname "$0")/../.."
mkdir -p "mesh-launcher/bench-results/$(date -u +%F)"
J="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xmx6g -cp mesh-launcher/target/lightmesh-mesh.jar"
run() { name=$1; shift; { echo "### $name"; echo "cmd: $*"; echo "start: $(date -u +%H:%M:%S) $(cat /proc/loadavg)"; $J "$@" 2>&1 | grep -v -E "^WARNING|INFO|^Nov|^[A-Z][a-z]{2} [0-9]"; echo "end: $(date -u +%H:%M:%S) $(cat /proc/loadavg)"; } > mesh-launcher/bench-results/$(date -u +%F)/$name.txt; }
run expert-tiny-1 io.lightmesh.launcher.ExpertCallBench --shape tiny --shards 2 --tokens 1 --calls 8000
run expert-tiny-2 io.lightmesh.launcher.ExpertCallBench --shape tiny --shards 2 --tokens 1 --calls 8000
run expert-medium io.lightmesh.launcher.ExpertCallBench --shape medium --shards 2 --tokens 1 --calls 4000
run tiny-e0-c1 io.lightmesh.launcher.BenchServe --shape tiny --experts 0 --concurrency 1 --requests 64 --prompt-len 64 --output-len 32
run tiny-e2-c1 io.lightmesh.launcher.BenchServe --shape tiny --experts 2 --concurrency 1 --requests 64 --prompt-len 64 --output-len 32
run tiny-e0-c16 io.lightmesh.launcher.BenchServe --shape tiny --experts 0 --concurrency 16 --requests 64 --prompt-len 64 --output-len 32
run medium-ref-e0-c1 io.lightmesh.launcher.BenchServe --shape medium --backend reference --experts 0 --concurrency 1 --requests 16 --prompt-len 32 --output-len 32
run medium-vec-e0-c1 io.lightmesh.launcher.BenchServe --shape medium --backend vector --experts 0 --concurrency 1 --requests 16 --prompt-len 32 --output-len 32
run medium-vec-e0-c16 io.lightmesh.launcher.BenchServe --shape medium --backend vector --experts 0 --concurrency 16 --requests 32 --prompt-len 16 --output-len 128
run medium-vec-e2-c16 io.lightmesh.launcher.BenchServe --shape medium --backend vector --experts 2 --concurrency 16 --requests 32 --prompt-len 16 --output-len 128

