#!/usr/bin/env bash
# Call 1 (2026-12-04): 4K prefill kernel profile (grouped / per-expert), then bench-serve on the GPU with the new kernels.
set -u
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
  grep -E "^bench: (prefill|decode)|OpenCL products|GEMM|grouped|decode kernels|Exception" $OUT/engine-$1-console.txt | head -14
  [ -f $OUT/enginebench.txt ] && mv $OUT/enginebench.txt $OUT/enginebench-$1.txt; save
}
{ date -u; nproc; free -g | head -2; } > $OUT/host.txt 2>&1
eng prefill-4k-profile 110 "-Dlightmesh.opencl.profile=true" "$ENGINE --prompt-lengths 4K --decode-tokens 2 --batch 1 --bandwidth-mib 0 --repeat 1"
grep -A40 "OpenCL kernel profile" $OUT/engine-prefill-4k-profile-console.txt | head -42
eng prefill-4k-profile-pe 40 "-Dlightmesh.opencl.profile=true -Dlightmesh.experts.grouped=per-expert" "$ENGINE --prompt-lengths 4K --decode-tokens 2 --batch 1 --bandwidth-mib 0 --repeat 1"
grep -A12 "OpenCL kernel profile" $OUT/engine-prefill-4k-profile-pe-console.txt | head -14
eng base 40 "" "$ENGINE --prompt-lengths 1K,4K --decode-tokens 128 --batch 8 --bandwidth-mib 0 --repeat 2"
step model
timeout $(lim 60) bash $G/tools/run-gpu.sh model > $OUT/model-console.txt 2>&1; tail -2 $OUT/model-console.txt
for c in "0 1 8 4" "0 16 32 16" "2 1 8 4" "2 16 32 16"; do set -- $c
  step "serve experts $1 conc $2"
  [ $(( DEADLINE - $(date +%s) )) -lt 30 ] && break
  SERVE_TIMEOUT=$(lim 80) SERVE_ARGS="--backend opencl --experts $1 --concurrency $2 --requests $3 --warmup $4 --prompt-len 128 --output-len 64" \
    bash $G/tools/run-gpu.sh serve > $OUT/serve-e$1-c$2-console.txt 2>&1
  grep -E "^== |throughput|TPOT ms|decode steps|device-resident" $OUT/serve-e$1-c$2-console.txt | head -12; save
done
step done; save
