# The two device calls behind repeats/ (device tool, nvidia-h200, carry [".runtime-h14d"], the pack of
# command.sh one folder up: tools/gpu/pack-mesh.sh from branch h14d at 4386bdd). Call 1 (runs 2-3, pool-runs-2-3.txt):
R=.runtime-h14d; { date -u; git log --oneline -1; nproc; uptime; } 2>&1 | tee $OUT/host.txt
for i in 1 2; do POOL_TIMEOUT=170 POOL_ARGS="--requests 32 --output-len 32 --window-s 4" bash $R/tools/run-gpu.sh pool > $OUT/console-$i.txt 2>&1; done
# Call 2 (runs 4-6, pool-runs-4-6.txt): the same loop over i in 3 4 5.
