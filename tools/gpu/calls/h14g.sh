#!/usr/bin/env bash
# h14g device call: grouped experts (every chosen expert of a set in two launches, experts_tc.cl / experts.cl) against
# the per-expert form (gather, W1, W3, SiLU*mul, W2, scatter per expert) on the 1.25B M1 shape; a kernel profile of
# the 1K prefill in the grouped form; the grouped-expert tests on the GPU. Sourced by go.sh ($G, $OUT, $ENGINE, lim).
P="$ENGINE --prompt-lengths 1K,4K --decode-tokens 8 --batch 1 --bandwidth-mib 0 --repeat 2"
run_engine() {  # name, seconds, java options, engine args
  JAVA_OPTS="$3" ENGINE_ARGS="$4" timeout $(lim $2) bash $G/tools/run-gpu.sh engine > $OUT/h14g-$1-console.txt 2>&1
  echo "--- $1 ($3)"; grep -E "bench: prefill|grouped experts|Exception|Error" $OUT/h14g-$1-console.txt | head -8
  [ -f $OUT/enginebench.txt ] && mv $OUT/enginebench.txt $OUT/h14g-enginebench-$1.txt
}
run_engine tc-launch 30 "-Dlightmesh.experts.grouped=launch" "$P"
run_engine tc-per-expert 30 "-Dlightmesh.experts.grouped=per-expert" "$P"
echo "--- tests"
TEST_CLASSES="io.lightmesh.engine.model.ResidentGroupedExpertsTest io.lightmesh.engine.model.DeviceExpertsTest io.lightmesh.engine.backend.opencl.OpenClTensorCoreTest io.lightmesh.engine.model.BackendFixturesTest" \
  timeout $(lim 45) bash $G/tools/run-gpu.sh tests > $OUT/h14g-tests-console.txt 2>&1
grep -E "tests (successful|failed|aborted)|✘|relative L2 vs host" $OUT/h14g-tests-console.txt | head -30
[ -f $OUT/tests.txt ] && mv $OUT/tests.txt $OUT/h14g-tests.txt
JAVA_OPTS="-Dlightmesh.opencl.profile=true" ENGINE_ARGS="$ENGINE --prompt-lengths 1K --decode-tokens 4 --batch 1 --bandwidth-mib 0 --repeat 1" \
  timeout $(lim 25) bash $G/tools/run-gpu.sh engine > $OUT/h14g-profile-1k-console.txt 2>&1
echo "--- profile 1K grouped"; grep -A16 "kernel profile" $OUT/h14g-profile-1k-console.txt | head -17; rm -f $OUT/enginebench.txt
run_engine fp32-launch 25 "-Dlightmesh.opencl.tensorCores=false -Dlightmesh.experts.grouped=launch" "$P"
run_engine fp32-per-expert 25 "-Dlightmesh.opencl.tensorCores=false -Dlightmesh.experts.grouped=per-expert" "$P"
