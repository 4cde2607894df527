#!/usr/bin/env bash
# h14r device call: the engine with its experts on 2 expert shards (loopback gRPC in one JVM, all on the H200) against
# experts in-process (ShardDecodeBench), the shards' small-batch path (the decode path's matrix-vector MoE kernels:
# one upload, two launches per chosen expert, one read-back) off and on side by side in one JVM (--small-batch 0,16,0:
# a fresh set of shards per bound; the third round shows how much of a difference is JIT warm-up order), batch 1, 8
# and 16, ping-pong on and off; then the small-path tests on the GPU. Needs a pack made by tools/gpu/pack-shards.sh.
# Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, lim N = min(N, seconds left). ~120 s.
# Logs: $OUT/h14r-shardbench.txt (the bench's report), $OUT/h14r-*-console.txt, $OUT/h14r-tests.txt.
echo "--- h14r shard-bench 1b"
SHARDS_TIMEOUT=$(lim 110) SHARDS_ARGS="--shape 1b --dtype bf16 --batches 1,8,16 --prompt-len 64 --steps 48 --small-batch 0,16,0" \
  timeout $(lim 115) bash $G/tools/run-gpu.sh shards > $OUT/h14r-shards-console.txt 2>&1
grep -E "shard-bench:|batch +[0-9]+:|calls [0-9.]+/step|Exception|Error" $OUT/h14r-shards-console.txt | head -40
[ -f $OUT/shardbench.txt ] && mv $OUT/shardbench.txt $OUT/h14r-shardbench.txt
echo "--- h14r tests"
TEST_CLASSES="io.lightmesh.engine.model.DeviceExpertsTest" timeout $(lim 40) bash $G/tools/run-gpu.sh tests > $OUT/h14r-tests-console.txt 2>&1
grep -E "tests (successful|failed|aborted)|✘" $OUT/h14r-tests-console.txt | head -12
[ -f $OUT/tests.txt ] && mv $OUT/tests.txt $OUT/h14r-tests.txt
