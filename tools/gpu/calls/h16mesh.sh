#!/usr/bin/env bash
# h16mesh device call: the mesh with 2 remote expert shards on the H200 with the new forms on (issue 14 targets: TPOT at
# concurrency 1 <= 1.3x the in-process engine, throughput at concurrency 16 >= in-process; call 1 of 2026-12-04: 6.5x
# and 0.47x). Needs a pack made by tools/gpu/pack-mesh.sh (now with netty's epoll library: jar_store.py dropped it, so
# gRPC ran on NIO there) and the serve checkpoint written before (run-gpu.sh model, MODEL_DIR or /tmp/lightmesh-model).
# Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, lim N = min(N, seconds left). At most 200 s.
# Forms (each a property, default off):
#   -Dlightmesh.shard.priority=true          a shard computes waiting decode batches before prefill ones (aged: a
#                                            prefill batch is overtaken for at most lightmesh.shard.prefillMaxWaitMs, 20)
#   -Dlightmesh.expert.prefillChunkRows=256  the prefill worker sends a layer's rows for a shard in batches of <= 256 rows
#   -Dlightmesh.shard.inlineDecode=true      a decode batch finding the device free is computed on the shard's transport
#                                            thread (no pool hand-off either way)
# 1. ShardDecodeBench on the serve checkpoint, batch 1, ping-pong: the shards' decode batches pooled vs inline,
#    interleaved twice (the first form run is the warm-up outlier);
# 2. bench-serve, 2 remote shards, concurrency 1 (8 requests, 4 warm-up) and 16 (32, 16), all three forms on; the
#    in-process engine on the same requests in the same runs. Logs: $OUT/h16mesh-*.txt (run-gpu.sh also appends the
#    serve runs to $OUT/serve.txt, left where it is for the go.sh).
FORMS="-Dlightmesh.shard.priority=true -Dlightmesh.expert.prefillChunkRows=256 -Dlightmesh.shard.inlineDecode=true"
MD="${MODEL_DIR:-/tmp/lightmesh-model}"
echo "=== h16mesh shard-bench (pooled vs inline decode batches), model $MD"
if [ -f "$MD/config.json" ]; then
  SHARDS_TIMEOUT=$(lim 42) SHARDS_ARGS="--model $MD --batches 1 --prompt-len 64 --steps 64 --variants local,pingpong --inline false,true,false,true" \
    timeout $(lim 45) bash $G/tools/run-gpu.sh shards > $OUT/h16mesh-shards-console.txt 2>&1
  grep -E "shard-bench:|gRPC over|batch +[0-9]+:|calls [0-9.]+/step|Exception|Error" $OUT/h16mesh-shards-console.txt | head -24
  [ -f $OUT/shardbench.txt ] && mv $OUT/shardbench.txt $OUT/h16mesh-shardbench.txt
else  # the serve steps need it: written here (~35 s) instead of the shard-bench
  echo "no checkpoint at $MD: shard-bench skipped, writing it (run-gpu.sh model)"
  MODEL_DIR="$MD" timeout $(lim 45) bash $G/tools/run-gpu.sh model > $OUT/h16mesh-model-console.txt 2>&1; tail -2 $OUT/h16mesh-model-console.txt
fi
for c in "1 8 4 65" "16 32 16 85"; do set -- $c
  echo "=== h16mesh serve experts 2 conc $1 [$FORMS]"
  [ $(lim $4) -lt 30 ] && { echo "too little time left"; break; }
  JAVA_OPTS="$FORMS" SERVE_TIMEOUT=$(lim $4) SERVE_ARGS="--backend opencl --experts 2 --concurrency $1 --requests $2 --warmup $3 --prompt-len 128 --output-len 64" \
    bash $G/tools/run-gpu.sh serve > $OUT/h16mesh-serve-e2-c$1-console.txt 2>&1
  grep -E "^== |throughput|TPOT ms|TTFT ms|decode steps|expert calls from|mean added|extra batches|priority gate|gRPC over|Exception" \
    $OUT/h16mesh-serve-e2-c$1-console.txt | cut -c1-400 | head -20
done
echo "=== h16mesh done"
