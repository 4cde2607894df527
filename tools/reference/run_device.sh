#!/bin/bash
# One GPU-machine session: corpus -> tokenizer -> logit fixtures (CPU) -> demo model (GPU).
# Usage on the device machine, from the repo root:  bash tools/reference/run_device.sh
# Results come back as $OUT/{tokenizer,fixtures,demo}.tar plus $OUT/log.txt.
set -u
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
W=/tmp/lmref
rm -rf "$W"; mkdir -p "$W"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch, transformers, tokenizers, safetensors; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, 'safetensors', safetensors.__version__)"
  echo "== corpus";     python3 corpus.py --out "$W/corpus"
  if [ "${SKIP_TOKENIZER:-0}" != 1 ]; then
  echo "== tokenizer";  python3 make_tokenizer.py --corpus "$W/corpus/corpus.txt" --out "$W/tokenizer" \
                          && tar -C "$W" -cf "$OUT/tokenizer.tar" tokenizer
  fi
  if [ "${SKIP_FIXTURES:-0}" != 1 ]; then
    echo "== fixtures"; python3 make_fixtures.py --out "$W/fixtures" && tar -C "$W" -cf "$OUT/fixtures.tar" fixtures
  fi
  if [ "${SKIP_DEMO:-0}" != 1 ]; then
    # the committed tokenizer fixture when present (it was trained on this same corpus), else the fresh one
    TOK="$W/tokenizer"; [ -f ../../engine/src/test/resources/fixtures/tokenizer/tokenizer.json ] && TOK=../../engine/src/test/resources/fixtures/tokenizer
    echo "== demo (tokenizer $TOK)"; python3 train_demo.py --corpus "$W/corpus/corpus.txt" --tokenizer "$TOK" \
                          --out "$W/demo" --seconds "${DEMO_SECONDS:-270}" && tar -C "$W" -cf "$OUT/demo.tar" demo
  fi
  date -u
} 2>&1 | grep --line-buffered -v -E "Warning|warnings.warn|Loading weights|Writing model shards" | tee "$OUT/log.txt"
