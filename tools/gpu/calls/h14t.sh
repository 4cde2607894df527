#!/usr/bin/env bash
# h14t device call 3 (optional, ~45 s): KernelBench gemm after the small-tile rule moved to v2n (65c3998; "auto" rows:
# the engine's choice), with NVIDIA's register report of tensorcore.cl (v2 now last in the file, so the cut build log
# shows it) written to a file. Sourced by go.sh: $G = the pack, $OUT = the output folder, lim N = min(N, slot left).
# Settings: -Dlightmesh.opencl.gemm=v2 (default: 128 x 128 tiles, 8 warps) | v2w4 | v2wide | v2s | v2n | v1 (old GEMM);
# -Dlightmesh.opencl.gemmSmall=true (default: products of v2 tiles reaching at most half the SMs on v2n) | false.
# Engine prefill with v2 vs v1: JAVA_OPTS=-Dlightmesh.opencl.gemm=v1 against the default (call 2 did so).
echo "=== h14t kernelbench gemm + register report"
JAVA_OPTS="-Dlightmesh.opencl.options=-cl-nv-verbose -Dlightmesh.opencl.buildLog=$OUT/h14t-buildlog.txt" BENCH_ARGS="--only gemm --reps 3" \
  timeout $(lim 60) bash $G/tools/run-gpu.sh bench > $OUT/h14t-kb-gemm-console.txt 2>&1
grep -E "OpenCL products of|^\| gemm|Exception" $OUT/h14t-kb-gemm-console.txt | head -40
grep -A4 -E "entry function '(gemm_tc|to_bf16)" $OUT/h14t-buildlog.txt 2>/dev/null | grep -E "entry function|registers|spill" | head -24
mv $OUT/kernelbench.txt $OUT/h14t-kernelbench-gemm.txt 2>/dev/null
echo "=== h14t done"
