#!/usr/bin/env bash
# h14b device call 2: tensor-core kernel (alignment fix) tests first, EngineBench beside the HF peer, kernel profile of
# device prefill, KernelBench matmul (fp32 GEMM vs tensor cores), every OpenCL test, fp32-product prefill for comparison.
set -u
REAL_OUT="$OUT"; export OUT=/tmp/o; mkdir -p $OUT
G=.gpu-h14b
T0=$(date +%s)
step() { echo "=== $* ($(( $(date +%s) - T0 )) s)"; }
lim() { local left=$(( 400 - ($(date +%s) - T0) )); [ $left -lt 5 ] && left=5; [ $1 -lt $left ] && echo $1 || echo $left; }
ENGINE="--size 100m --vocab 32000 --hidden 2048 --layers 16 --heads 16 --kv-heads 4 --head-dim 128 --rotary-dim 64 --experts 8 --top-k 2 --intermediate 1024"
step tensor-core tests
TEST_CLASSES="io.lightmesh.engine.backend.opencl.OpenClTensorCoreTest" timeout $(lim 60) bash $G/tools/run-gpu.sh tests > $OUT/tc-tests-console.txt 2>&1
grep -E "tensor cores|✔|✘|tests (successful|failed)" $OUT/tc-tests-console.txt | head -20
mv $OUT/tests.txt $OUT/tc-tests.txt
step engine tensor cores
ENGINE_ARGS="$ENGINE --prompt-lengths 1K,4K --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 2" timeout $(lim 150) bash $G/tools/run-gpu.sh engine 2>&1 | grep -E "bench:|products|tensor|Exception" | head -20
step hf peer
PEER_ARGS="--prompt-lengths 1024,4096 --batches 1,8 --decode-tokens 32" timeout $(lim 90) bash $G/tools/run-gpu.sh peer peer-summary > $OUT/peer-console.txt 2>&1
cat $OUT/peer-summary.txt
cp $OUT/enginebench.txt $OUT/enginebench-tc.txt
step profile of device prefill 4K, tensor cores
JAVA_OPTS=-Dlightmesh.opencl.profile=true ENGINE_ARGS="$ENGINE --prompt-lengths 4K --decode-tokens 0 --bandwidth-mib 0 --repeat 1" timeout $(lim 60) bash $G/tools/run-gpu.sh engine > $OUT/engine-profile-console.txt 2>&1
grep -A30 "kernel profile" $OUT/engine-profile-console.txt | head -32
step kernelbench matmul
BENCH_ARGS="--only matmul --reps 4" timeout $(lim 60) bash $G/tools/run-gpu.sh bench > $OUT/kb-console.txt 2>&1
grep -E "matmul \((resident|tensor)|Exception" $OUT/kernelbench.txt $OUT/kb-console.txt | head -20
step engine fp32 products
JAVA_OPTS=-Dlightmesh.opencl.tensorCores=false ENGINE_ARGS="$ENGINE --prompt-lengths 1K,4K --decode-tokens 0 --bandwidth-mib 0 --repeat 2" timeout $(lim 60) bash $G/tools/run-gpu.sh engine > $OUT/engine-fp32-console.txt 2>&1
grep "bench: prefill" $OUT/engine-fp32-console.txt
step all OpenCL tests
timeout $(lim 150) bash $G/tools/run-gpu.sh tests > $OUT/tests-console.txt 2>&1
grep -E "tensor cores|tests (successful|failed|aborted)|✘" $OUT/tests-console.txt | head -30
step done
rm -rf $OUT/junit
tar czf $REAL_OUT/results.tgz -C $OUT .
