#!/usr/bin/env bash
# h14c device call 2: the fused decode step's two forms on the H200: split (norms and router one group per row, 7
# launches a layer) beside the HF peer, tails (5 a layer) with NVIDIA's register report (-cl-nv-verbose), a kernel
# profile of the split form, and the fused-decode tests on the GPU.
set -u
REAL_OUT="$OUT"; export OUT=/tmp/o; rm -rf $OUT; mkdir -p $OUT
G=.runtime-h14c
T0=$(date +%s)
step() { echo "=== $* ($(( $(date +%s) - T0 )) s)"; }
lim() { local left=$(( 400 - ($(date +%s) - T0) )); [ $left -lt 5 ] && left=5; [ $1 -lt $left ] && echo $1 || echo $left; }
save() { rm -rf $OUT/junit; tar czf $REAL_OUT/results.tgz -C $OUT .; }
ENGINE="--size 100m --vocab 32000 --hidden 2048 --layers 16 --heads 16 --kv-heads 4 --head-dim 128 --rotary-dim 64 --experts 8 --top-k 2 --intermediate 1024"
step engine fused split
JAVA_OPTS=-Dlightmesh.decode.tails=false ENGINE_ARGS="$ENGINE --prompt-lengths 1K,4K --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" timeout $(lim 120) bash $G/tools/run-gpu.sh engine > $OUT/engine-split-console.txt 2>&1
grep -E "bench:|Exception" $OUT/engine-split-console.txt | grep -v "writing" | head; save
step hf peer
PEER_ARGS="--prompt-lengths 1024,4096 --batches 1,8 --decode-tokens 32" timeout $(lim 100) bash $G/tools/run-gpu.sh peer peer-summary > $OUT/peer-console.txt 2>&1
cat $OUT/peer-summary.txt; mv $OUT/enginebench.txt $OUT/enginebench-split.txt; save
step engine fused tails, register report
JAVA_OPTS="-Dlightmesh.opencl.options=-cl-nv-verbose -Dlightmesh.opencl.buildLog=true" ENGINE_ARGS="$ENGINE --prompt-lengths 1K --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" timeout $(lim 90) bash $G/tools/run-gpu.sh engine > $OUT/engine-tails-console.txt 2>&1
grep -E "bench: decode|Exception" $OUT/engine-tails-console.txt | head; grep -B1 -A2 -E "Function properties for (dec_|matvec_bf16v|moe_)" $OUT/engine-tails-console.txt | grep -E "Function properties|registers|spill|stack" | head -60
mv $OUT/enginebench.txt $OUT/enginebench-tails.txt; save
step fused decode tests
TEST_CLASSES="io.lightmesh.engine.model.FusedDecodeTest io.lightmesh.engine.model.ResidentDecodeTest" timeout $(lim 90) bash $G/tools/run-gpu.sh tests > $OUT/fused-tests-console.txt 2>&1
grep -E "tests (successful|failed|aborted)|✘" $OUT/fused-tests-console.txt | head -20
mv $OUT/tests.txt $OUT/fused-tests.txt; save
step profile split
JAVA_OPTS="-Dlightmesh.opencl.profile=true -Dlightmesh.decode.tails=false" ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 64 --batch 8 --bandwidth-mib 0 --repeat 1" timeout $(lim 60) bash $G/tools/run-gpu.sh engine > $OUT/engine-profile-split-console.txt 2>&1
grep -A14 "kernel profile" $OUT/engine-profile-split-console.txt | head -15; rm -f $OUT/enginebench.txt
step done
save
