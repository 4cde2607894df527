#!/usr/bin/env bash
# h17: the greedy step's argmax on the device (argmax_rows: B ints read back instead of B * V logits) and the
# tensor-core decode products' two-model failure. Sourced by the call's go.sh ($G the pack, $OUT, $ENGINE, lim N).
# 1. The OpenCL tests of the step's choice and of two models on one device, with tc off and split (and TcDiagTest
#    when the pack has it: the error of every form by variant and prefill length);
# 2. EngineBench decode b1 + b8, tc off / split / bf16, each with the device argmax and with --decode-logits.
echo "=== h17 tests"
for f in off split; do
  JAVA_OPTS="-Dlightmesh.decode.tc=$f" TEST_CLASSES="io.lightmesh.engine.backend.opencl.OpenClArgmaxTest io.lightmesh.engine.model.ResidentDecodeTest io.lightmesh.engine.backend.opencl.DecodeTcTest io.lightmesh.engine.backend.opencl.OpenClDecodeKernelsTest" \
    timeout $(lim 70) bash $G/tools/run-gpu.sh tests > $OUT/h17-tests-$f-console.txt 2>&1
  echo "--- tc=$f"; grep -E "✘|tests (successful|failed|aborted)" $OUT/h17-tests-$f-console.txt | cut -c1-300 | head -12
  mv $OUT/tests.txt $OUT/h17-tests-$f.txt 2>/dev/null; rm -rf $OUT/junit
done
if [ "${H17_DIAG:-1}" = 1 ]; then
  JAVA_OPTS="-Dlightmesh.decode.tc=split" TEST_CLASSES="io.lightmesh.engine.backend.opencl.TcDiagTest" \
    timeout $(lim 60) bash $G/tools/run-gpu.sh tests > $OUT/h17-diag-console.txt 2>&1
  grep -E "^form|checks|✘" $OUT/h17-diag-console.txt | cut -c1-400
  rm -f $OUT/tests.txt; rm -rf $OUT/junit
fi
h17_eng() {  # name, limit, form, extra engine args
  echo "=== h17 engine $1"
  JAVA_OPTS="-Dlightmesh.decode.tc=$3" ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1 ${4:-}" \
    timeout $(lim $2) bash $G/tools/run-gpu.sh engine > $OUT/h17-engine-$1-console.txt 2>&1
  grep -E "bench: decode|decode products|Exception|Error" $OUT/h17-engine-$1-console.txt | cut -c1-260 | head -6
  mv $OUT/enginebench.txt $OUT/h17-enginebench-$1.txt 2>/dev/null
}
h17_eng off-argmax 110 off
h17_eng off-logits 30 off --decode-logits
for f in split bf16; do h17_eng $f-argmax 30 $f; h17_eng $f-logits 30 $f --decode-logits; done
echo "=== h17 done"
