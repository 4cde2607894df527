#!/bin/bash
# One GPU-machine call that retrains models/demo on the docs corpus + the chats (issue 12 part 3).
# Run from a folder holding corpus.py, mmref.py, train_demo.py, chats_rendered.jsonl.gz (ChatCorpusRenderer's output,
# gzipped), tokenizer/ (engine/src/test/resources/fixtures/tokenizer) and, as a fallback, fallback_corpus.txt.gz
# (a docs corpus built elsewhere, used only when corpus.py fails here). Writes $OUT/demo/ and $OUT/log.txt.
set -u
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
W=/tmp/lmdemo
rm -rf "$W"; mkdir -p "$W" "$OUT/demo"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch, transformers, tokenizers, safetensors; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, 'safetensors', safetensors.__version__)"
  echo "== corpus"
  CORPUS="$W/corpus/corpus.txt"
  if ! timeout "${CORPUS_LIMIT:-75}" python3 corpus.py --out "$W/corpus" --max-bytes "${CORPUS_BYTES:-6000000}" || [ ! -s "$CORPUS" ]; then
    echo "corpus.py failed or timed out: using the carried fallback corpus"
    gunzip -c fallback_corpus.txt.gz > "$W/fallback.txt"; CORPUS="$W/fallback.txt"
  fi
  date -u
  echo "== demo"
  timeout "${TRAIN_LIMIT:-290}" python3 train_demo.py --corpus "$CORPUS" --tokenizer tokenizer --out "$OUT/demo" \
      --chats chats_rendered.jsonl.gz --chat-fraction "${CHAT_FRACTION:-0.6}" --seconds "${DEMO_SECONDS:-200}"
  echo "train_demo exit $?"
  date -u
  ls -la "$OUT/demo"
} 2>&1 | grep --line-buffered -v -E "Warning|warnings.warn|Loading weights|Writing model shards" | tee "$OUT/log.txt"
