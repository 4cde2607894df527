# The device call that produced these logs (device tool, nvidia-h200, carry [".runtime-h14d"]), with
# .runtime-h14d made here by: NO_BUILD=1 tools/gpu/pack-mesh.sh /work/main/.runtime-h14d  (after
# mvn -pl engine,mesh-launcher -am verify on branch h14d at 4386bdd; 36 MiB)
R=.runtime-h14d; { date -u; git log --oneline -1; command -v xz zstd; nproc; free -g | head -2; } 2>&1 | tee $OUT/host.txt
bash $R/tools/run-gpu.sh model
for c in "0 1 8 4" "2 1 8 4" "0 16 32 16" "2 16 32 16"; do set -- $c
  SERVE_TIMEOUT=90 SERVE_ARGS="--backend opencl --experts $1 --concurrency $2 --requests $3 --warmup $4 --prompt-len 128 --output-len 64" \
    bash $R/tools/run-gpu.sh serve
done
POOL_TIMEOUT=150 POOL_ARGS="--requests 32 --output-len 32 --window-s 4" bash $R/tools/run-gpu.sh pool
