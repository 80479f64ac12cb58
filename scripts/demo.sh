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
echo
echo "== pipeweaver-cli: emulate batch 0 under 1F1B and interleaved 1F1B on 16 H100s"
"$pw" simulate --model configs/models/lmm-37b.json --cluster configs/clusters/h100-80g-16x.json \
  --trace "$out/video-heavy.jsonl" --batch 0 --schedule 1f1b --microbatches 32
"$pw" simulate --model configs/models/lmm-37b.json --cluster configs/clusters/h100-80g-16x.json \
  --trace "$out/video-heavy.jsonl" --batch 0 --schedule interleaved-1f1b --chunks-per-rank 2 \
  --microbatches 32 --chrome-trace "$out/interleaved.trace.json"
echo "   (open $out/interleaved.trace.json in chrome://tracing or ui.perfetto.dev)"
echo
echo "== pipeweaver-cli: search a schedule for each of 20 batches (37B on 8 ranks x 8 replicas, ZeRO-1)"
echo "   and compare with GPipe, 1F1B, interleaved 1F1B and ZB-H1 under the same emulator"
"$pw" gen-trace -q --mix configs/mixes/video-heavy.json --model configs/models/lmm-37b.json \
  --batches 20 --seed 1 -o "$out/video-heavy-20.jsonl"
"$pw" search --model configs/models/lmm-37b.json --cluster configs/clusters/h100-80g-64x-pp8.json --zero1 \
  --trace "$out/video-heavy-20.jsonl" --threads 2 -o "$out/schedules.jsonl" --report "$out/report" \
  --report-batches 0
echo "   (open $out/report/batch-0.svg in a browser: PipeWeaver's pipeline above the best baseline's)"

echo
echo "== powerinfer2-cli"
"$pi" --version
shared_models="$root/../shared/models"
if [[ -f "$shared_models/stories260K.bin" ]]; then
  echo "-- import the llama2.c model stories260K to GGUF, then generate greedily"
  "$pi" import --llama2c "$shared_models/stories260K.bin" --tokenizer "$shared_models/tok512.bin" \
    -o "$out/stories260K.gguf"
  "$pi" generate -m "$out/stories260K.gguf" -p "Once upon a time" -n 120 --temp 0
else
  echo "-- (../shared/models not present: no model to generate with; inspecting a GGUF file)"
  "$pi" inspect tests/data/powerinfer2/writer-golden.gguf
fi

echo
echo "demo outputs are in $out"
