#!/usr/bin/env bash
# h14t device call: the tensor-core GEMM v2 (ldmatrix, cp.async pipeline, XOR swizzle) beside v1 on the H200.
# Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, $ENGINE = the 1.25B-shape EngineBench args,
# lim N = min(N, seconds left in this slot). Logs: $OUT/h14t-*.txt. About 150 s.
# 1. KernelBench gemm (v1, v2, v2w8, v2wide side by side at the 1.25B prefill shapes) with NVIDIA's register report;
# 2. the tensor-core tests (v2 forms against the host at 1e-4, the probe's fallback); 3. EngineBench prefill with v2
# (default) and v1; 4. a kernel profile of the 4K prefill with v2.
echo "=== h14t kernelbench gemm + register report"
JAVA_OPTS="-Dlightmesh.opencl.options=-cl-nv-verbose -Dlightmesh.opencl.buildLog=true" BENCH_ARGS="--only gemm --reps 4" \
  timeout $(lim 40) bash $G/tools/run-gpu.sh bench > $OUT/h14t-kb-gemm-console.txt 2>&1
grep -E "OpenCL products of|^\| gemm|Exception|error" $OUT/h14t-kb-gemm-console.txt | head -40
grep -A3 -E "Function properties for (gemm_tc|to_bf16)" $OUT/h14t-kb-gemm-console.txt | grep -E "Function properties|registers|spill|stack" | head -24
mv $OUT/kernelbench.txt $OUT/h14t-kernelbench-gemm.txt 2>/dev/null
echo "=== h14t tensor-core tests"
TEST_CLASSES="io.lightmesh.engine.backend.opencl.OpenClTensorCoreGemmTest io.lightmesh.engine.backend.opencl.OpenClTensorCoreTest" \
  timeout $(lim 40) bash $G/tools/run-gpu.sh tests > $OUT/h14t-tests-console.txt 2>&1
grep -E "tensor cores|OpenCL products of|✔|✘|tests (successful|failed|aborted)" $OUT/h14t-tests-console.txt | head -24
mv $OUT/tests.txt $OUT/h14t-tests.txt 2>/dev/null
for g in v2 v1; do
  echo "=== h14t engine prefill gemm=$g"
  JAVA_OPTS="-Dlightmesh.opencl.gemm=$g" ENGINE_ARGS="$ENGINE --prompt-lengths 1K,4K --decode-tokens 8 --batch 1 --bandwidth-mib 0 --repeat 2" \
    timeout $(lim 35) bash $G/tools/run-gpu.sh engine > $OUT/h14t-engine-$g-console.txt 2>&1
  grep -E "OpenCL products of|bench: prefill|Exception" $OUT/h14t-engine-$g-console.txt | head -8
  mv $OUT/enginebench.txt $OUT/h14t-enginebench-$g.txt 2>/dev/null
done
echo "=== h14t profile 4K prefill gemm=v2"
JAVA_OPTS="-Dlightmesh.opencl.profile=true" ENGINE_ARGS="$ENGINE --prompt-lengths 4K --decode-tokens 0 --batch 1 --bandwidth-mib 0 --repeat 1" \
  timeout $(lim 30) bash $G/tools/run-gpu.sh engine > $OUT/h14t-engine-profile-console.txt 2>&1
grep -A16 "kernel profile" $OUT/h14t-engine-profile-console.txt | head -17
rm -f $OUT/enginebench.txt
echo "=== h14t done"
