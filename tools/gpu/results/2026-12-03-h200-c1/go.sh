#!/usr/bin/env bash
# A combined device call: each helper's tools/gpu/calls/<name>.sh (copied into $G/calls) in turn, each in a slot of
# its own, under one deadline. Usage: bash <pack>/go.sh NAME[:SLOT_S] ...
set -u
G="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; G="${G#$PWD/}"
REAL_OUT="$OUT"; export OUT=/tmp/o; rm -rf $OUT; mkdir -p $OUT
T0=$(date +%s); DEADLINE=$((T0 + ${CALL_S:-570}))
ENGINE="--size 100m --vocab 32000 --hidden 2048 --layers 16 --heads 16 --kv-heads 4 --head-dim 128 --rotary-dim 64 --experts 8 --top-k 2 --intermediate 1024"
export G ENGINE
save() { rm -rf $OUT/junit; tar czf $REAL_OUT/results.tgz -C $OUT .; }
step() { echo "=== $* ($(( $(date +%s) - T0 )) s)"; }
for spec in "$@"; do
  name=${spec%%:*}; slot=${spec#*:}; [ "$slot" = "$spec" ] && slot=130
  HEND=$(( $(date +%s) + slot )); [ $HEND -gt $DEADLINE ] && HEND=$DEADLINE
  lim() { local left=$(( HEND - $(date +%s) )); [ $left -lt 5 ] && left=5; [ $1 -lt $left ] && echo $1 || echo $left; }
  step "$name (slot ${slot} s)"
  if [ $(( DEADLINE - $(date +%s) )) -lt 10 ]; then echo "skipped: no time left"; continue; fi
  ( source "$G/calls/$name.sh" ) > "$OUT/$name-console.txt" 2>&1
  echo "rc=$?"; tail -25 "$OUT/$name-console.txt"
  save
done
step done
save
