#!/usr/bin/env bash
# h14k device call 3: the decode kernels v2 with the fused attention split in 32-key pieces (call 2: dec_attn 105 us a
# launch, 4 groups a row), and two weight rows a warp (-Dlightmesh.decode.warpRows=2) not yet measured.
# Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, $ENGINE = the 1.25B-shape EngineBench args,
# lim N = min(N, seconds left in this slot); the checkpoint written before. Logs: $OUT/h14k-*.txt. About 100 s.
# 1. the decode kernels' tests (OpenClDecodeKernelsTest, FusedDecodeTest with v1/v2/v2x2, ResidentDecodeTest);
# 2. EngineBench decode b1/b8, 256 steps, with the event profile (v2, the default);
# 3. the same without the profile, two rows a warp (its b8 figure beside the coordinator's default run).
echo "=== h14k decode kernel tests"
TEST_CLASSES="io.lightmesh.engine.backend.opencl.OpenClDecodeKernelsTest io.lightmesh.engine.model.FusedDecodeTest io.lightmesh.engine.model.ResidentDecodeTest" \
  timeout $(lim 60) bash $G/tools/run-gpu.sh tests > $OUT/h14k-tests-console.txt 2>&1
grep -E "resident.cl|✘|tests (successful|failed|aborted)" $OUT/h14k-tests-console.txt | head -24
mv $OUT/tests.txt $OUT/h14k-tests.txt 2>/dev/null; rm -rf $OUT/junit
for k in v2-events v2x2; do
  echo "=== h14k engine decode $k"
  opts="-Dlightmesh.decode.kernels=v2"
  [ $k = v2-events ] && opts="$opts -Dlightmesh.opencl.profile=events"
  [ $k = v2x2 ] && opts="$opts -Dlightmesh.decode.warpRows=2"
  JAVA_OPTS="$opts" ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" \
    timeout $(lim 75) bash $G/tools/run-gpu.sh engine > $OUT/h14k-engine-$k-console.txt 2>&1
  grep -E "bench: decode|resident.cl|Exception" $OUT/h14k-engine-$k-console.txt | head -6
  grep -A14 -E "^OpenCL kernel profile" $OUT/h14k-engine-$k-console.txt | head -32
  mv $OUT/enginebench.txt $OUT/h14k-enginebench-$k.txt 2>/dev/null
done
echo "=== h14k done"
