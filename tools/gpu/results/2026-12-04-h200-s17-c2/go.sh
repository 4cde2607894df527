#!/usr/bin/env bash
# One combined device call: the helpers' call scripts (CALLS="h16pf h16dec ..."), each sourced in a subshell with
# its own share of the call's time, then the baseline EngineBench / HF peer / bench-serve steps named in STEPS.
set +u
G="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; G="${G#$PWD/}"
REAL_OUT="$OUT"; export OUT=/tmp/o; rm -rf $OUT; mkdir -p $OUT
T0=$(date +%s); DEADLINE=$((T0 + ${CALL_S:-560}))
ENGINE="--size 100m --vocab 32000 --hidden 2048 --layers 16 --heads 16 --kv-heads 4 --head-dim 128 --rotary-dim 64 --experts 8 --top-k 2 --intermediate 1024"
save() { rm -rf $OUT/junit; tar czf $REAL_OUT/results.tgz -C $OUT .; }
step() { echo "=== $* ($(( $(date +%s) - T0 )) s)"; }
lim() { local left=$(( DEADLINE - $(date +%s) )); [ $left -lt 5 ] && left=5; [ $1 -lt $left ] && echo $1 || echo $left; }
eng() {  # name, limit, java opts, engine args
  step "engine $1 [$3]"
  JAVA_OPTS="$3" ENGINE_ARGS="$4" timeout $(lim $2) bash $G/tools/run-gpu.sh engine > $OUT/engine-$1-console.txt 2>&1
  grep -E "^bench: (prefill|decode)|OpenCL products|GEMM|grouped|decode kernels|decode product|route|Exception" $OUT/engine-$1-console.txt | head -16
  [ -f $OUT/enginebench.txt ] && mv $OUT/enginebench.txt $OUT/enginebench-$1.txt; save
}
export -f lim step save
{ date -u; nproc; free -g | head -2; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; } > $OUT/host.txt 2>&1
for s in ${STEPS:-}; do
  case $s in
    base) eng base ${BASE_S:-90} "${BASE_OPTS:-}" "$ENGINE --prompt-lengths 1K,4K --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 3" ;;
    base-logits) eng base-logits ${BASE_S:-60} "${BASE_OPTS:-}" "$ENGINE --prompt-lengths 1K --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1 --decode-logits" ;;
    1m) eng 1m ${M1_S:-60} "" "--size demo --prompt-lengths 1M --decode-tokens 16 --batch 1 --bandwidth-mib 0 --repeat 1" ;;
    peer) step "hf peer"
      PEER_ARGS="${PEER_ARGS:---prompt-lengths 1024,4096 --batches 1,8 --decode-tokens 16}" timeout $(lim ${PEER_S:-70}) bash $G/tools/run-gpu.sh peer > $OUT/peer-console.txt 2>&1
      cp $OUT/enginebench-base.txt $OUT/enginebench.txt; timeout 20 bash $G/tools/run-gpu.sh peer-summary > /dev/null 2>&1; rm -f $OUT/enginebench.txt
      cat $OUT/peer-summary.txt; save ;;
    decode-forms) for f in split bf16 off; do
        eng decode-tc-$f 30 "-Dlightmesh.decode.tc=$f" "$ENGINE --prompt-lengths 128 --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1"
      done ;;
    tests) step tests
      TEST_CLASSES="${TESTS:-}" timeout $(lim ${TESTS_S:-120}) bash $G/tools/run-gpu.sh tests > $OUT/tests-console.txt 2>&1
      grep -E "✘|tests (successful|failed|aborted)" $OUT/tests-console.txt | cut -c1-300 | head -20; rm -f $OUT/tests.txt; save ;;
  esac
done
for c in ${CALLS:-}; do
  step "call $c"
  eval share=\${SHARE_$c:-150}
  ( DEADLINE=$(( $(date +%s) + share )); [ $DEADLINE -gt $(( T0 + ${CALL_S:-560} )) ] && DEADLINE=$(( T0 + ${CALL_S:-560} )); source $G/calls/$c.sh ) > $OUT/$c-console.txt 2>&1
  tail -${TAIL:-40} $OUT/$c-console.txt; save
done
step done; save
