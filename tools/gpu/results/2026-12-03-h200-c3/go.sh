#!/usr/bin/env bash
# Call 2: the merged branches' defaults against the old settings, beside the HF peer, then variants, tests.
set -u
G="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; G="${G#$PWD/}"
REAL_OUT="$OUT"; export OUT=/tmp/o; rm -rf $OUT; mkdir -p $OUT
T0=$(date +%s); DEADLINE=$((T0 + ${CALL_S:-570}))
ENGINE="--size 100m --vocab 32000 --hidden 2048 --layers 16 --heads 16 --kv-heads 4 --head-dim 128 --rotary-dim 64 --experts 8 --top-k 2 --intermediate 1024"
save() { rm -rf $OUT/junit; tar czf $REAL_OUT/results.tgz -C $OUT .; }
step() { echo "=== $* ($(( $(date +%s) - T0 )) s)"; }
lim() { local left=$(( DEADLINE - $(date +%s) )); [ $left -lt 5 ] && left=5; [ $1 -lt $left ] && echo $1 || echo $left; }
eng() {  # name, limit, java opts, engine args
  step "engine $1 [$3]"
  JAVA_OPTS="$3" ENGINE_ARGS="$4" timeout $(lim $2) bash $G/tools/run-gpu.sh engine > $OUT/engine-$1-console.txt 2>&1
  grep -E "^bench: (prefill|decode)|OpenCL products|GEMM|grouped|decode kernels|Exception" $OUT/engine-$1-console.txt | head -14
  [ -f $OUT/enginebench.txt ] && mv $OUT/enginebench.txt $OUT/enginebench-$1.txt; save
}
FULL="$ENGINE --prompt-lengths 1K,4K --decode-tokens 256 --batch 8 --bandwidth-mib 0"
eng new 100 "" "$FULL --repeat 2"
step "hf peer"
PEER_ARGS="--prompt-lengths 1024,4096 --batches 1,8 --decode-tokens 32" timeout $(lim 90) bash $G/tools/run-gpu.sh peer > $OUT/peer-console.txt 2>&1
cp $OUT/enginebench-new.txt $OUT/enginebench.txt; timeout 20 bash $G/tools/run-gpu.sh peer-summary > /dev/null 2>&1; rm -f $OUT/enginebench.txt
cat $OUT/peer-summary.txt; save
eng prefill-4k-events 40 "-Dlightmesh.opencl.profile=events" "$ENGINE --prompt-lengths 4K --decode-tokens 4 --batch 1 --bandwidth-mib 0 --repeat 1"
grep -A24 -E "kernel profile" $OUT/engine-prefill-4k-events-console.txt | head -30
eng prefill-per-expert 35 "-Dlightmesh.experts.grouped=per-expert" "$ENGINE --prompt-lengths 1K,4K --decode-tokens 0 --batch 1 --bandwidth-mib 0 --repeat 2"
eng decode-events 40 "-Dlightmesh.opencl.profile=events" "$ENGINE --prompt-lengths 128 --decode-tokens 128 --batch 8 --bandwidth-mib 0 --repeat 1"
grep -A14 -E "kernel profile" $OUT/engine-decode-events-console.txt | head -36
step tests
TEST_CLASSES="${TESTS}" timeout $(lim 100) bash $G/tools/run-gpu.sh tests > $OUT/tests-console.txt 2>&1
grep -E "✘|tests (successful|failed|aborted)" $OUT/tests-console.txt | head -20
step shards
if [ $(( DEADLINE - $(date +%s) )) -gt 40 ]; then ( source $G/calls/h14r.sh ) > $OUT/h14r-console.txt 2>&1; tail -30 $OUT/h14r-console.txt; fi
step done; save
