#!/usr/bin/env bash
# h14c device call: the fused decode step on the H200. Fused-decode tests first (correctness before figures), then
# EngineBench decode batch 1 and 8 fused and per-operation (-Dlightmesh.decode.fused=false), the HF peer beside the
# fused run, a kernel profile of fused decode, and every OpenCL test with the time left.
set -u
REAL_OUT="$OUT"; export OUT=/tmp/o; rm -rf $OUT; mkdir -p $OUT
G=.runtime-h14c
T0=$(date +%s)
step() { echo "=== $* ($(( $(date +%s) - T0 )) s)"; }
lim() { local left=$(( 560 - ($(date +%s) - T0) )); [ $left -lt 5 ] && left=5; [ $1 -lt $left ] && echo $1 || echo $left; }
save() { rm -rf $OUT/junit; tar czf $REAL_OUT/results.tgz -C $OUT .; }
ENGINE="--size 100m --vocab 32000 --hidden 2048 --layers 16 --heads 16 --kv-heads 4 --head-dim 128 --rotary-dim 64 --experts 8 --top-k 2 --intermediate 1024"
step fused decode tests
TEST_CLASSES="io.lightmesh.engine.model.FusedDecodeTest io.lightmesh.engine.model.ResidentDecodeTest" timeout $(lim 120) bash $G/tools/run-gpu.sh tests > $OUT/fused-tests-console.txt 2>&1
grep -E "tensor cores|OpenCL tests run|tests (successful|failed|aborted)|✘" $OUT/fused-tests-console.txt | head -20
mv $OUT/tests.txt $OUT/fused-tests.txt; save
step engine fused
ENGINE_ARGS="$ENGINE --prompt-lengths 1K,4K --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" timeout $(lim 150) bash $G/tools/run-gpu.sh engine > $OUT/engine-fused-console.txt 2>&1
grep -E "bench:|Exception|WARN" $OUT/engine-fused-console.txt | head -20; save
step hf peer
PEER_ARGS="--prompt-lengths 1024,4096 --batches 1,8 --decode-tokens 32" timeout $(lim 100) bash $G/tools/run-gpu.sh peer peer-summary > $OUT/peer-console.txt 2>&1
cat $OUT/peer-summary.txt; mv $OUT/enginebench.txt $OUT/enginebench-fused.txt; save
step engine per-operation
JAVA_OPTS=-Dlightmesh.decode.fused=false ENGINE_ARGS="$ENGINE --prompt-lengths 1K --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" timeout $(lim 90) bash $G/tools/run-gpu.sh engine > $OUT/engine-perop-console.txt 2>&1
grep -E "bench: decode|Exception" $OUT/engine-perop-console.txt | head; mv $OUT/enginebench.txt $OUT/enginebench-perop.txt; save
step profile fused decode
JAVA_OPTS=-Dlightmesh.opencl.profile=true ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 64 --batch 8 --bandwidth-mib 0 --repeat 1" timeout $(lim 60) bash $G/tools/run-gpu.sh engine > $OUT/engine-profile-console.txt 2>&1
grep -A40 "kernel profile" $OUT/engine-profile-console.txt | head -42; rm -f $OUT/enginebench.txt; save
step all OpenCL tests
timeout $(lim 200) bash $G/tools/run-gpu.sh tests > $OUT/tests-console.txt 2>&1
grep -E "tests (successful|failed|aborted)|✘" $OUT/tests-console.txt | head -30
step done
save
