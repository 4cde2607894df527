#!/usr/bin/env bash
# Whether NVIDIA's OpenCL compile cache follows CUDA_CACHE_PATH (the Helm chart's kernelCache): the same tiny EngineBench
# start three times, with a fresh cache directory, the same one again, then another fresh one; each start's seconds and
# what each directory (and ~/.nv) holds after. Run from the checkout root: bash tools/gpu/calls/kernel-cache.sh PACK
P="${1:-.gpu-s17}"
rm -rf /tmp/kc1 /tmp/kc2 "$HOME/.nv"
one() {
  local t0=$(date +%s.%N)
  CUDA_CACHE_PATH=$1 ENGINE_ARGS="--size tiny --prompt-lengths 64 --decode-tokens 16 --batch 1 --bandwidth-mib 0 --repeat 1" \
    timeout 150 bash "$P/tools/run-gpu.sh" engine > "$OUT/kernel-cache-$2-console.txt" 2>&1
  echo "$2: CUDA_CACHE_PATH=$1, $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s; $1 holds $(du -sh "$1" 2>/dev/null | cut -f1) in $(find "$1" -type f 2>/dev/null | wc -l) files; ~/.nv $(du -sh "$HOME/.nv" 2>/dev/null | cut -f1)"
  grep -E "decode products|bench: prefill" "$OUT/kernel-cache-$2-console.txt" | cut -c1-160 | head -2
}
one /tmp/kc1 cold
one /tmp/kc1 warm
one /tmp/kc2 other-cold
rm -f "$OUT/enginebench.txt"
