#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian/Ubuntu machine:
# install and build, convert a model into one file and into 3 shards, generate
# on one rank, then on 3 ranks with 3 samples in the recurrent pipeline.
# Uses ../shared/models/stories260K when present, else a synthetic model.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
jobs/setup.sh "$here/build"
source jobs/env.sh
out=$here/out
mkdir -p "$out"
models=${MDI_MODELS_DIR:-$here/../shared/models}
rm -rf "$out/model.h5" "$out/shards"
if [ -f "$models/stories260K/stories260K.bin" ]; then
  src=("$models/stories260K/stories260K.bin" --tokenizer "$models/stories260K/tok512.bin")
  prompt="Once upon a time"
else
  echo "quickstart: $models/stories260K not found: using a synthetic model (random weights, gibberish text)" >&2
  src=(--synthetic stories260k)
  prompt="Hello"
fi
build/mdi-convert "${src[@]}" -o "$out/model.h5"
build/mdi-convert "${src[@]}" -o "$out/shards" --shards 3
build/mdi-convert --inspect "$out/shards"
echo "== 1 rank, greedy =="
build/mdi-llm --model "$out/model.h5" --prompt "$prompt" --temperature 0 --max-tokens 60
echo "== 3 ranks (one shard each), 3 samples, temperature 0.8 =="
jobs/run.sh -n 3 -- --model "$out/shards" --prompt "$prompt" --samples 3 --temperature 0.8 \
  --max-tokens 60 --stats-json "$out/stats.json"
echo "== per-rank statistics: $out/stats.json =="
cat "$out/stats.json"
