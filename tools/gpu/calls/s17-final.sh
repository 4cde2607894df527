#!/usr/bin/env bash
# Session 17's last call: SamplerBench on the GPU host's cores (a sampled token at V = 32,000 and 200,064, and a
# step's 8 sampled rows serial against parallel), then EngineBench decode b1 + b8 with the defaults (greedy argmax on
# the device, tc split), and once more with the event profile (a step's wall time beside its kernels' span: the host's
# share). Run from the checkout root: bash tools/gpu/calls/s17-final.sh PACK
P="${1:-.gpu-s17}"
ENGINE="--size 100m --vocab 32000 --hidden 2048 --layers 16 --heads 16 --kv-heads 4 --head-dim 128 --rotary-dim 64 --experts 8 --top-k 2 --intermediate 1024"
{ date -u; nproc; nvidia-smi --query-gpu=name,driver_version --format=csv; } > "$OUT/host.txt" 2>&1
echo "=== sampler"
SAMPLER_ARGS="--reps 11" timeout 150 bash "$P/tools/run-gpu.sh" sampler > "$OUT/sampler-console.txt" 2>&1
grep -vE "^(OCL|lrwx|-rwx|\s+lib|NVIDIA|name,|Fri|Thu)" "$OUT/samplerbench.txt" | head -24
eng() {
  echo "=== engine $1"
  JAVA_OPTS="${2:-}" ENGINE_ARGS="$ENGINE --prompt-lengths 128 --decode-tokens 256 --batch 8 --bandwidth-mib 0 --repeat 1" \
    timeout $3 bash "$P/tools/run-gpu.sh" engine > "$OUT/engine-$1-console.txt" 2>&1
  grep -E "^bench: decode|a step .* wall" "$OUT/engine-$1-console.txt" | cut -c1-230
  mv "$OUT/enginebench.txt" "$OUT/enginebench-$1.txt" 2>/dev/null
}
eng defaults "" 150
eng events "-Dlightmesh.opencl.profile=events" 60
grep -A14 "decode batch 8 kernel profile" "$OUT/engine-events-console.txt" | cut -c1-120
