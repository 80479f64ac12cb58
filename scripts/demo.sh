#!/usr/bin/env bash
# Installs what is missing, builds, and runs each tool's main job on shipped defaults.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh
echo "== building (Release)"
bash scripts/build.sh "$root/build" -DCMAKE_BUILD_TYPE=Release

pw="$root/build/pipeweaver-cli/pipeweaver-cli"
pi="$root/build/powerinfer2-cli/powerinfer2-cli"
out="$root/out/demo"
mkdir -p "$out"

echo
echo "== pipeweaver-cli: draw a 100-batch trace from a video-heavy data mix for the 37B model"
"$pw" --version
"$pw" gen-trace --mix configs/mixes/video-heavy.json --model configs/models/lmm-37b.json \
  --batches 100 --seed 1 -o "$out/video-heavy.jsonl"
echo "   first batch: $(head -c 160 "$out/video-heavy.jsonl")..."

echo
echo "== powerinfer2-cli: inspect a GGUF file"
"$pi" --version
"$pi" inspect tests/data/powerinfer2/writer-golden.gguf

echo
echo "demo outputs are in $out"
