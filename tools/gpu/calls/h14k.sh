#!/usr/bin/env bash
# h14k device call 2: the decode kernels v2 (lane-group matrix-vector products with shfl.sync sums, 16-byte bf16 loads,
# norms and router without barrier trees, the lightning state split by rows) beside v1 on the H200, batch 1 and 8.
# Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, $ENGINE = the 1.25B-shape EngineBench args,
# lim N = min(N, seconds left in this slot); the checkpoint is written before (call 1 lost its engine runs to that).
# Logs: $OUT/h14k-*.txt. About 130 s with the checkpoint written (each engine run ~30 s: start-up, then 256 steps).
# 1. the decode kernels' tests on the GPU (fused step launch by launch against the per-operation calls with v1, v2
#    and v2 two rows a lane group; the whole fused step against the reference; v2 against the host and v1 at odd
#    sizes; the event profile) -- call 1 ran them at c8ac448: 53 of 54 passed, the profile test's fix is in;
# 2. EngineBench decode b1/b8 after a 128-token prompt, 256 steps, each with the device-clock kernel profile
#    (-Dlightmesh.opencl.profile=events: per kernel launches, us, GB/s; a step's wall time beside its kernels' time):
#    v2 (the default), v2 with two weight rows a lane group (-Dlightmesh.decode.warpRows=2), v1. The events cost some
#    host time a launch: the coordinator's default-settings run without the profile is the throughput figure.
echo "=== h14k decode kernel tests"
TEST_CLASSES="io.lightmesh.engine.backend.opencl.OpenClDecodeKernelsTest io.lightmesh.engine.model.FusedDecodeTest io.lightmesh.engine.model.ResidentDecodeTest" \
  timeout $(lim 60) bash $G/tools/run-gpu.sh tests > $OUT/h14k-tests-console.txt 2>&1
grep -E "resident.cl|✘|tests (successful|failed|aborted)" $OUT/h14k-tests-console.txt | head -24
mv $OUT/tests.txt $OUT/h14k-tests.txt 2>/dev/null; rm -rf $OUT/junit
for k in v2 v2x2 v1; do
  echo "=== h14k engine decode + event profile, kernels=$k"
  opts="-Dlightmesh.decode.kernels=${k:0:2} -Dlightmesh.opencl.profile=events"
  [ $k = v2x2 ] && opts="$opts -Dlightmesh.decode.warpRows=2"
  JAVA_OPTS="$opts" ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" \
    timeout $(lim 75) bash $G/tools/run-gpu.sh engine > $OUT/h14k-engine-$k-console.txt 2>&1
  grep -E "bench: decode|resident.cl|Exception" $OUT/h14k-engine-$k-console.txt | head -6
  grep -A14 -E "^OpenCL kernel profile" $OUT/h14k-engine-$k-console.txt | head -32
  mv $OUT/enginebench.txt $OUT/h14k-enginebench-$k.txt 2>/dev/null
done
echo "=== h14k done"
