#!/usr/bin/env bash
# h14r device call: the engine with its experts on 2 expert shards (loopback gRPC in one JVM, all on the H200) against
# experts in-process (ShardDecodeBench), side by side in one JVM: the shards' small-batch path (the decode path's
# matrix-vector MoE kernels: one upload, two launches per chosen expert, one read-back) on and off (--small-batch 16,0:
# a fresh set of shards per bound) x the decode worker's side of a call fast and plain (--worker-side fast,plain: sent
# from the decoding thread with one read-back of x | ids | weights, or a pool thread per call and three read-backs),
# new before old (JIT warm-up favours what runs later), batch 1 and 16, ping-pong on and off; then the small-path
# tests on the GPU. Needs a pack made by tools/gpu/pack-shards.sh.
# Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, lim N = min(N, seconds left). ~120 s.
# Logs: $OUT/h14r-shardbench.txt (the bench's report), $OUT/h14r-*-console.txt, $OUT/h14r-tests.txt.
echo "--- h14r shard-bench 1b"
# EngineBench's cached 1.25B checkpoint when this call wrote it (the same shape; saves the ~35 s write)
CK=$(ls -d $HOME/.cache/lightmesh/bench/m1-bf16-v32000-h2048-l16-H16x128-kv4-r64-e8k2-i1024-seed1 2>/dev/null | head -1)
MODEL_ARG="--shape 1b --dtype bf16"; [ -n "$CK" ] && [ -f "$CK/config.json" ] && MODEL_ARG="--model $CK"
echo "model: $MODEL_ARG"
# call 3 (after call 2: small path clearly ahead; fast vs plain worker side confounded by run order): the worker
# side alone, small path on, each form twice interleaved, ping-pong on (the product's default), batch 1 and 16
SHARDS_TIMEOUT=$(lim 70) SHARDS_ARGS="$MODEL_ARG --batches 1,16 --prompt-len 64 --steps 64 --small-batch 16 --variants pingpong --worker-side plain,fast,async,oneread,plain,fast" \
  timeout $(lim 75) bash $G/tools/run-gpu.sh shards > $OUT/h14r-shards-console.txt 2>&1
grep -E "shard-bench:|batch +[0-9]+:|calls [0-9.]+/step|Exception|Error" $OUT/h14r-shards-console.txt | head -60
[ -f $OUT/shardbench.txt ] && mv $OUT/shardbench.txt $OUT/h14r-shardbench.txt
