#!/usr/bin/env bash
# h16dec device call: the decode kernels v3 (decode_v3.cl, -Dlightmesh.decode.kernels=v3; the default stays v2) against
# v2 at batch 1 and 8. v3 = faster bf16 products (1/2/4 weight rows a warp, 16 loads a lane in flight, a batch-1 form)
# plus, by default within v3, the norms and router in the products' tails (-Dlightmesh.decode.v3.tails: 5 launches a
# layer) and a lightning layer in one launch at batch 1 (-Dlightmesh.decode.v3.lightning): 114 -> 68 launches a step
# at batch 1, 82 at batch 8. Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, $ENGINE = the
# 1.25B-shape EngineBench args, lim N = min(N, seconds left in this slot); the checkpoint written before. Logs: $OUT/h16dec-*.txt.
# Limits add up to 170 s:
# 1. the decode kernels' tests on the GPU (OpenClDecodeKernelsTest with the v3 forms, tails and the one-launch
#    lightning layer, FusedDecodeTest with v1/v2/v2x2/v3/v3r1/v3r2/v3r4/v3s, ResidentDecodeTest's fused step with v3
#    against the host), 55 s;
# 2. KernelBench --only decode3: each fused-step product with v2 and v3 (rows a lane group auto with the fusions apart,
#    then auto, 1, 2, 4 fused), GB/s at batch 1 and 8 (tensor cores off: no products of 33+ rows here, and no
#    probe build), 25 s;
# 3. EngineBench decode batch 1 and 8 (128-token prompt, 256 steps) with v2, with v3, and v3 with the event profile
#    (the per-kernel table), 30 + 30 + 30 s.
echo "=== h16dec decode kernel tests"
TEST_CLASSES="io.lightmesh.engine.backend.opencl.OpenClDecodeKernelsTest io.lightmesh.engine.model.FusedDecodeTest io.lightmesh.engine.model.ResidentDecodeTest" \
  timeout $(lim 55) bash $G/tools/run-gpu.sh tests > $OUT/h16dec-tests-console.txt 2>&1
grep -E "decode kernels|decode_v3|✘|tests (successful|failed|aborted)" $OUT/h16dec-tests-console.txt | head -24
mv $OUT/tests.txt $OUT/h16dec-tests.txt 2>/dev/null; rm -rf $OUT/junit
echo "=== h16dec KernelBench decode3 (v2 vs v3)"
JAVA_OPTS="-Dlightmesh.opencl.tensorCores=false" BENCH_ARGS="--only decode3 --reps 3" timeout $(lim 25) bash $G/tools/run-gpu.sh bench > $OUT/h16dec-kernelbench-console.txt 2>&1
grep -E "decode3|decode kernels|decode_v3|Exception" $OUT/h16dec-kernelbench-console.txt | grep -v "^| decode3" | head -6
grep -E "^\| decode3" $OUT/h16dec-kernelbench-console.txt | awk '!seen[$0]++' | head -60
mv $OUT/kernelbench.txt $OUT/h16dec-kernelbench.txt 2>/dev/null
for k in v2 v3 v3-events; do
  echo "=== h16dec engine decode $k"
  opts="-Dlightmesh.decode.kernels=${k%-events}"
  [ $k = v3-events ] && opts="$opts -Dlightmesh.opencl.profile=events"
  l=30
  JAVA_OPTS="$opts" ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" \
    timeout $(lim $l) bash $G/tools/run-gpu.sh engine > $OUT/h16dec-engine-$k-console.txt 2>&1
  grep -E "bench: decode|decode kernels|decode_v3|Exception" $OUT/h16dec-engine-$k-console.txt | head -6
  grep -A16 -E "^OpenCL kernel profile" $OUT/h16dec-engine-$k-console.txt | head -36
  mv $OUT/enginebench.txt $OUT/h16dec-enginebench-$k.txt 2>/dev/null
done
echo "=== h16dec done"
