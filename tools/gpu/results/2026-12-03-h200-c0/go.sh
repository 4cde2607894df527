#!/usr/bin/env bash
# Call 0 (session 2026-12-03 night): baseline after the one-forward-pass refactor; 1K prefill profile; 1M-token prompt.
set -u
REAL_OUT="$OUT"; export OUT=/tmp/o; rm -rf $OUT; mkdir -p $OUT
G=.gpu-c0
T0=$(date +%s)
step() { echo "=== $* ($(( $(date +%s) - T0 )) s)"; }
lim() { local left=$(( 575 - ($(date +%s) - T0) )); [ $left -lt 5 ] && left=5; [ $1 -lt $left ] && echo $1 || echo $left; }
save() { rm -rf $OUT/junit; tar czf $REAL_OUT/results.tgz -C $OUT .; }
ENGINE="--size 100m --vocab 32000 --hidden 2048 --layers 16 --heads 16 --kv-heads 4 --head-dim 128 --rotary-dim 64 --experts 8 --top-k 2 --intermediate 1024"
step engine default
ENGINE_ARGS="$ENGINE --prompt-lengths 1K,4K --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" timeout $(lim 120) bash $G/tools/run-gpu.sh engine > $OUT/engine-console.txt 2>&1
grep -E "bench:|Exception|^ +[0-9]+ +[0-9]" $OUT/engine-console.txt | head -20; save
step hf peer
PEER_ARGS="--prompt-lengths 1024,4096 --batches 1,8 --decode-tokens 32" timeout $(lim 110) bash $G/tools/run-gpu.sh peer peer-summary > $OUT/peer-console.txt 2>&1
cat $OUT/peer-summary.txt; mv $OUT/enginebench.txt $OUT/enginebench-default.txt; save
step profile prefill 1K
JAVA_OPTS="-Dlightmesh.opencl.profile=true" ENGINE_ARGS="$ENGINE --prompt-lengths 1K --decode-tokens 4 --batch 1 --bandwidth-mib 0 --repeat 1" timeout $(lim 60) bash $G/tools/run-gpu.sh engine > $OUT/engine-profile-1k-console.txt 2>&1
grep -A30 "kernel profile" $OUT/engine-profile-1k-console.txt | head -32; rm -f $OUT/enginebench.txt; save
step demo 1M prompt
ENGINE_ARGS="--size demo --prompt-lengths 1M --decode-tokens 16 --batch 1 --bandwidth-mib 0 --repeat 1" timeout $(lim 400) bash $G/tools/run-gpu.sh engine > $OUT/engine-1m-console.txt 2>&1
echo "1M rc=$?"; grep -E "^ +[0-9]+ +[0-9]|Exception|prefill|decode" $OUT/engine-1m-console.txt | head; mv $OUT/enginebench.txt $OUT/enginebench-1m.txt 2>/dev/null
step done
save
