#!/usr/bin/env bash
# h14g device call: grouped experts (every chosen expert of a set in two launches, experts_tc.cl / experts.cl) against
# the per-expert form (gather, W1, W3, SiLU*mul, W2, scatter per expert) on the 1.25B M1 shape, and the grouped form
# with its table made on the device (device), the grouped kernels' two tensor-core forms (v2, v1); a kernel profile of
# the 1K prefill in the grouped form; the grouped-expert tests on the GPU. Sourced by go.sh ($G, $OUT, $ENGINE, lim).
# run-gpu.sh appends to $OUT/enginebench.txt and writes $OUT/tests.txt: this script takes its own part out of them
# into h14g-* files and leaves what other steps wrote as it was. Each engine run about 15-20 s once the bench
# checkpoint exists (the first run writes it, 30-40 s); the steps in order of importance, so that a short slot cuts
# the last ones.
P="$ENGINE --prompt-lengths 1K,4K --decode-tokens 8 --batch 1 --bandwidth-mib 0 --repeat 2"
run_engine() {  # name, seconds, java options, engine args
  local pre; pre=$(stat -c %s $OUT/enginebench.txt 2>/dev/null || echo 0)
  JAVA_OPTS="$3" ENGINE_ARGS="$4" timeout $(lim $2) bash $G/tools/run-gpu.sh engine > $OUT/h14g-$1-console.txt 2>&1
  echo "--- $1 ($3)"; grep -E "bench: prefill|grouped experts|Exception|Error" $OUT/h14g-$1-console.txt | head -8
  if [ -f $OUT/enginebench.txt ]; then
    tail -c +$((pre + 1)) $OUT/enginebench.txt > $OUT/h14g-enginebench-$1.txt
    if [ "$pre" = 0 ]; then rm -f $OUT/enginebench.txt; else truncate -s "$pre" $OUT/enginebench.txt; fi
  fi
}
# Variants (system properties): -Dlightmesh.experts.grouped=launch (default) | device | per-expert (the old form);
# -Dlightmesh.experts.tc=v2 (default where its probe check passes) | v1 (the grouped kernels' first tensor-core form).
# Call 3 (after call 2 ran the merged defaults against all-old settings): the grouped form alone against per-expert
# with everything else at the new defaults (GEMM v2), an event profile of the 4K prefill, then device and v1.
run_engine tc-launch 60 "-Dlightmesh.experts.grouped=launch" "$P"
run_engine tc-per-expert 60 "-Dlightmesh.experts.grouped=per-expert" "$P"
run_engine profile-4k 60 "-Dlightmesh.opencl.profile=events" "$ENGINE --prompt-lengths 4K --decode-tokens 4 --batch 1 --bandwidth-mib 0 --repeat 1"
grep -A24 "kernel profile" $OUT/h14g-profile-4k-console.txt | head -50
run_engine tc-device 60 "-Dlightmesh.experts.grouped=device" "$P"
run_engine tc-launch-v1 60 "-Dlightmesh.experts.grouped=launch -Dlightmesh.experts.tc=v1" "$P"
run_engine fp32-launch 60 "-Dlightmesh.opencl.tensorCores=false -Dlightmesh.experts.grouped=launch" "$P"
run_engine fp32-per-expert 60 "-Dlightmesh.opencl.tensorCores=false -Dlightmesh.experts.grouped=per-expert" "$P"
