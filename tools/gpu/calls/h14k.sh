#!/usr/bin/env bash
# h14k device call: the decode kernels v2 (lane-group matrix-vector products with shfl.sync sums, norms and router
# without barrier trees, the lightning state split by rows) beside v1 on the H200, batch 1 and 8. About 150 s.
# Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, $ENGINE = the 1.25B-shape EngineBench args,
# lim N = min(N, seconds left in this slot). Logs: $OUT/h14k-*.txt.
# 1. the decode kernels' tests on the GPU (fused step launch by launch against the per-operation calls, the whole
#    fused step against the reference, v2 against v1 and the host at odd sizes);
# 2. EngineBench decode b1/b8, 256 steps: v2, v1, and v2 with two weight rows a lane group (warpRows=2) (no
#    profiling: the throughput figures);
# 3. the device-clock kernel profile (-Dlightmesh.opencl.profile=events) of 64 decode steps at b1/b8, v2 (with
#    NVIDIA's register report of the v2 kernels) then v1.
echo "=== h14k decode kernel tests"
TEST_CLASSES="io.lightmesh.engine.backend.opencl.OpenClDecodeKernelsTest io.lightmesh.engine.model.FusedDecodeTest io.lightmesh.engine.model.ResidentDecodeTest" \
  timeout $(lim 40) bash $G/tools/run-gpu.sh tests > $OUT/h14k-tests-console.txt 2>&1
grep -E "resident.cl|✘|tests (successful|failed|aborted)" $OUT/h14k-tests-console.txt | head -24
mv $OUT/tests.txt $OUT/h14k-tests.txt 2>/dev/null; rm -rf $OUT/junit
for k in v2 v1 v2x2; do
  echo "=== h14k engine decode kernels=$k"
  opts="-Dlightmesh.decode.kernels=${k:0:2}"; [ $k = v2x2 ] && opts="$opts -Dlightmesh.decode.warpRows=2"
  JAVA_OPTS="$opts" ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" \
    timeout $(lim 35) bash $G/tools/run-gpu.sh engine > $OUT/h14k-engine-$k-console.txt 2>&1
  grep -E "bench: decode|resident.cl|Exception" $OUT/h14k-engine-$k-console.txt | head -6
  mv $OUT/enginebench.txt $OUT/h14k-enginebench-$k.txt 2>/dev/null
done
for k in v2 v1; do
  echo "=== h14k event profile kernels=$k"
  extra=""; [ $k = v2 ] && extra="-Dlightmesh.opencl.options=-cl-nv-verbose -Dlightmesh.opencl.buildLog=true"
  JAVA_OPTS="-Dlightmesh.decode.kernels=$k -Dlightmesh.opencl.profile=events $extra" \
    ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 64 --batch 8 --bandwidth-mib 0 --repeat 1" \
    timeout $(lim 30) bash $G/tools/run-gpu.sh engine > $OUT/h14k-profile-$k-console.txt 2>&1
  grep -E "bench: decode|resident.cl|Exception" $OUT/h14k-profile-$k-console.txt | head -6
  grep -A14 -E "^OpenCL kernel profile" $OUT/h14k-profile-$k-console.txt | head -32
  [ $k = v2 ] && grep -A3 -E "Function properties for (matvec2|dec_proj2|dec_projr2|moe_gate_up2|moe_down2|dec_norm_route2|residual_norm2|dec_lightning2)_?(bf16v|bf16)?$" \
    $OUT/h14k-profile-$k-console.txt | grep -E "Function properties|registers|spill|stack" | head -24
  rm -f $OUT/enginebench.txt
done
echo "=== h14k done"
