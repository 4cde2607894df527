#!/usr/bin/env bash
# h16pf device call: prefill routed on the device (-Dlightmesh.prefill.deviceRoute=true: prefill_route.cl's router,
# per-expert counts, offsets and tile table, the grouped expert launches over the device's table with a worst-case
# grid), so that a prefill chunk enqueues with no host sync per layer (the host form: 83 syncs for a 4K prompt: the
# ids read back and the table written every layer, the token ids written and a fresh state's zeros uploaded blocking).
# Sourced by go.sh: $G = the pack, $OUT = the output folder, $ENGINE = the 1.25B-shape EngineBench args, lim N =
# min(N, seconds left); the bench checkpoint written before. Logs: $OUT/h16pf-*.txt. Limits 40 + 35 + 35 + 30 = 140 s.
# 1. the new tests on the GPU (prefill_route.cl against route and the host table; routed prefill against the host
#    form; the grouped experts' tests beside them);
# 2. EngineBench prefill 1K,4K (best of 3) with deviceRoute=false, then =true: the prefill lines carry the host syncs;
# 3. the 4K prefill with deviceRoute=true under the event profile: the per-kernel device-clock table of the prefill.
run_h16pf_engine() {  # name, seconds, java options, engine args
  local pre; pre=$(stat -c %s $OUT/enginebench.txt 2>/dev/null || echo 0)
  JAVA_OPTS="$3" ENGINE_ARGS="$4" timeout $(lim $2) bash $G/tools/run-gpu.sh engine > $OUT/h16pf-$1-console.txt 2>&1
  echo "--- h16pf $1 ($3)"
  grep -E "^bench: prefill|prefill routing|grouped experts|Exception|Error" $OUT/h16pf-$1-console.txt | head -12
  if [ -f $OUT/enginebench.txt ]; then
    tail -c +$((pre + 1)) $OUT/enginebench.txt > $OUT/h16pf-enginebench-$1.txt
    if [ "$pre" = 0 ]; then rm -f $OUT/enginebench.txt; else truncate -s "$pre" $OUT/enginebench.txt; fi
  fi
}
echo "=== h16pf tests"
TEST_CLASSES="io.lightmesh.engine.backend.opencl.OpenClRouteKernelsTest io.lightmesh.engine.model.ResidentPrefillRouteTest io.lightmesh.engine.model.ResidentGroupedExpertsTest" \
  timeout $(lim 40) bash $G/tools/run-gpu.sh tests > $OUT/h16pf-tests-console.txt 2>&1
grep -E "prefill routing|✘|tests (successful|failed|aborted)" $OUT/h16pf-tests-console.txt | head -16
mv $OUT/tests.txt $OUT/h16pf-tests.txt 2>/dev/null; rm -rf $OUT/junit
P="$ENGINE --prompt-lengths 1K,4K --decode-tokens 2 --batch 1 --bandwidth-mib 0 --repeat 3"
run_h16pf_engine host-route 35 "-Dlightmesh.prefill.deviceRoute=false" "$P"
run_h16pf_engine device-route 35 "-Dlightmesh.prefill.deviceRoute=true" "$P"
run_h16pf_engine profile-4k 30 "-Dlightmesh.prefill.deviceRoute=true -Dlightmesh.opencl.profile=events" \
  "$ENGINE --prompt-lengths 4K --decode-tokens 2 --batch 1 --bandwidth-mib 0 --repeat 1"
grep -A30 "bench: prefill 4096 tokens kernel profile" $OUT/h16pf-profile-4k-console.txt | head -32
echo "=== h16pf done"
