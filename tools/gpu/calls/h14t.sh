#!/usr/bin/env bash
# h14t device call 2: the tensor-core GEMM v2 (ldmatrix, cp.async 3-stage pipeline, XOR swizzle) beside v1 on the H200.
# Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, $ENGINE = the 1.25B-shape EngineBench args,
# lim N = min(N, seconds left in this slot). Logs: $OUT/h14t-*.txt. Assumes the 1.25B checkpoint is already written
# (the coordinator's first step); then about 200 s.
# Settings: -Dlightmesh.opencl.gemm=v2 (default: 128 x 128 tiles, 8 warps) | v2w4 | v2wide | v2s | v2n | v1 (old GEMM);
# -Dlightmesh.opencl.gemmSmall=true (default: products of few 128 x 128 tiles on v2s) | false.
# 1. EngineBench prefill with v2 (default) and v1; 2. KernelBench gemm (v1, v2, v2w4, v2wide, v2s, v2n, the engine's
# choice "auto" side by side at the 1.25B prefill shapes), NVIDIA's register report of tensorcore.cl into a file;
# 3. the tensor-core tests (v2 forms against the host at 1e-4, the probe's fallbacks); 4. a 4K prefill profile with v2.
for g in v2 v1; do
  echo "=== h14t engine prefill gemm=$g"
  JAVA_OPTS="-Dlightmesh.opencl.gemm=$g" ENGINE_ARGS="$ENGINE --prompt-lengths 1K,4K --decode-tokens 8 --batch 1 --bandwidth-mib 0 --repeat 2" \
    timeout $(lim 90) bash $G/tools/run-gpu.sh engine > $OUT/h14t-engine-$g-console.txt 2>&1
  grep -E "OpenCL products of|bench: prefill|Exception" $OUT/h14t-engine-$g-console.txt | head -8
  mv $OUT/enginebench.txt $OUT/h14t-enginebench-$g.txt 2>/dev/null
done
echo "=== h14t kernelbench gemm + register report"
JAVA_OPTS="-Dlightmesh.opencl.options=-cl-nv-verbose -Dlightmesh.opencl.buildLog=$OUT/h14t-buildlog.txt" BENCH_ARGS="--only gemm --reps 4" \
  timeout $(lim 60) bash $G/tools/run-gpu.sh bench > $OUT/h14t-kb-gemm-console.txt 2>&1
grep -E "OpenCL products of|^\| gemm|Exception" $OUT/h14t-kb-gemm-console.txt | head -40
grep -A4 -E "entry function '(gemm_tc|to_bf16)" $OUT/h14t-buildlog.txt 2>/dev/null | grep -E "entry function|registers|spill" | head -24
mv $OUT/kernelbench.txt $OUT/h14t-kernelbench-gemm.txt 2>/dev/null
echo "=== h14t tensor-core tests"
TEST_CLASSES="io.lightmesh.engine.backend.opencl.OpenClTensorCoreGemmTest io.lightmesh.engine.backend.opencl.OpenClTensorCoreTest" \
  timeout $(lim 60) bash $G/tools/run-gpu.sh tests > $OUT/h14t-tests-console.txt 2>&1
grep -E "OpenCL products of|✘|tests (successful|failed|aborted)" $OUT/h14t-tests-console.txt | head -24
mv $OUT/tests.txt $OUT/h14t-tests.txt 2>/dev/null; rm -rf $OUT/junit
echo "=== h14t profile 4K prefill gemm=v2"
JAVA_OPTS="-Dlightmesh.opencl.profile=true" ENGINE_ARGS="$ENGINE --prompt-lengths 4K --decode-tokens 0 --batch 1 --bandwidth-mib 0 --repeat 1" \
  timeout $(lim 60) bash $G/tools/run-gpu.sh engine > $OUT/h14t-engine-profile-console.txt 2>&1
grep -A20 "kernel profile" $OUT/h14t-engine-profile-console.txt | head -21
rm -f $OUT/enginebench.txt
echo "=== h14t done"
