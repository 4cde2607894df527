#!/usr/bin/env bash
# h16tc: the decode products on tensor cores (decode_tc.cl, -Dlightmesh.decode.tc=off|split|bf16, default off).
# Sourced by the call's go.sh: $G = the pack, $OUT = the output folder, $ENGINE = the 1.25B-shape EngineBench args,
# lim N = min(N, seconds left in this slot); the checkpoint written before. Logs: $OUT/h16tc-*.txt. Limits: 165 s.
# 1. DecodeTcTest on the GPU (the PTX mma: every kernel of both forms against its v2 twin, products of 1..20 rows,
#    the whole decode step of a bf16 model with split and bf16);
# 2. EngineBench decode b1 + b8 with tc=off, split, bf16 (each run's start-up line names the decode products);
# 3. b16 (the per-operation step past 8 rows: only its products of <= 16 rows change) with off and the best form;
# 4. the best form's b1 + b8 with the event profile (per-kernel us and GB/s).
echo "=== h16tc tests"
TEST_CLASSES="io.lightmesh.engine.backend.opencl.DecodeTcTest" \
  timeout $(lim 35) bash $G/tools/run-gpu.sh tests > $OUT/h16tc-tests-console.txt 2>&1
grep -E "decode_tc|whole decode step|matmul (split|bf16)|✘|tests (successful|failed|aborted)" $OUT/h16tc-tests-console.txt | head -24
mv $OUT/tests.txt $OUT/h16tc-tests.txt 2>/dev/null; rm -rf $OUT/junit
h16tc_eng() {  # name, limit, form, batch, extra java opts
  echo "=== h16tc engine $1"
  JAVA_OPTS="-Dlightmesh.decode.tc=$3 ${5:-}" ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 256 --batch $4 --bandwidth-mib 0 --repeat 1" \
    timeout $(lim $2) bash $G/tools/run-gpu.sh engine > $OUT/h16tc-engine-$1-console.txt 2>&1
  grep -E "bench: decode|decode products|decode_tc|Exception|Error" $OUT/h16tc-engine-$1-console.txt | head -8
  mv $OUT/enginebench.txt $OUT/h16tc-enginebench-$1.txt 2>/dev/null
}
b8() { grep -oE "decode batch 8: .*\(([0-9.]+) tokens/s" $OUT/h16tc-engine-$1-b8-console.txt 2>/dev/null | grep -oE "[0-9.]+ tokens/s" | grep -oE "^[0-9.]+" || echo 0; }
for f in off split bf16; do h16tc_eng $f-b8 25 $f 8; done
best=split; awk "BEGIN{exit !($(b8 bf16) > $(b8 split))}" && best=bf16
echo "h16tc b8 tokens/s: off $(b8 off), split $(b8 split), bf16 $(b8 bf16); best tensor-core form $best"
h16tc_eng off-b16 15 off 16
h16tc_eng $best-b16 15 $best 16
h16tc_eng $best-b8-events 25 $best 8 "-Dlightmesh.opencl.profile=events"
grep -A14 -E "^OpenCL kernel profile" $OUT/h16tc-engine-$best-b8-events-console.txt | head -32
echo "=== h16tc done"
