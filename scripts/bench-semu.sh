#!/usr/bin/env bash
# SEMU and cost-model throughput: simulated actions per second on a 16-rank,
# 64-microbatch interleaved 1F1B schedule of the ~37B config, with reuse on and off (one
# step repeated; candidate layer partitions as a search makes them), and the time to cost
# (and emulate) a whole 100-batch trace with reuse on vs off. What each line measures:
# pipeweaver-cli/cmd_bench_semu.cpp.
# Uses only the project's binaries, bash and /usr/bin/time. Times are CPU time of the
# benchmarking thread (the machine's cores may be shared); run it twice and take the best.
#
#   scripts/bench-semu.sh [BUILD_DIR]      (default: build)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
cli="$build/pipeweaver-cli/pipeweaver-cli"
[[ -x "$cli" ]] || { echo "error: $cli not found; build first (scripts/build.sh)" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

model="$root/configs/models/lmm-37b.json"
cluster="$root/configs/clusters/h100-80g-16x.json"
"$cli" gen-trace -q --mix "$root/configs/mixes/video-heavy.json" --model "$model" \
  --batches 100 --seed 1 -o "$work/trace.jsonl"

timer=()
[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f "  (wall %e s, user %U s, max RSS %M KiB)")

echo "bench-semu: lmm-37b on h100-80g-16x, interleaved-1f1b, 2 chunks per rank, 64 microbatches"
"${timer[@]}" "$cli" bench-semu --model "$model" --cluster "$cluster" --trace "$work/trace.jsonl" \
  --schedule interleaved-1f1b --chunks-per-rank 2 --microbatches 64 --min-seconds 1 > "$work/out.json"

# Pull the figures out of the JSON with bash alone (one number per key).
num() { grep -o "\"$1\": [0-9.e+-]*" "$work/$2" | head -n "${3:-1}" | tail -n 1 | sed 's/.*: //'; }
section() { awk -v k="\"$1\": {" 'index($0, k) {p = 1} p {print} p && /}/ {exit}' "$work/out.json" > "$work/$1.json"; }
for s in semu_only reuse_on reuse_on_result_cache result_cache_miss reuse_off candidates_on candidates_off; do
  grep -q "\"$s\": {" "$work/out.json" || continue
  section "$s"
  per="$(num us_per_step "$s.json" | cut -d. -f1) us per step"
  [[ $s == candidates_* ]] && per="$(num us_per_candidate "$s.json" | cut -d. -f1) us per candidate, $(num candidates "$s.json") candidates"
  printf '  %-24s %8.2f M actions/s  (%s)\n' "$s" "$(awk -v x="$(num actions_per_s "$s.json")" 'BEGIN {print x / 1e6}')" "$per"
done
awk '/"trace": {/ {p = 1} p {print}' "$work/out.json" > "$work/trace-section.json"
[[ -s "$work/trace-section.json" ]] || exit 0
awk '/"reuse_off": {/ {p = 1} p {print} p && /}/ {exit}' "$work/trace-section.json" > "$work/toff.json"
awk '/"reuse_on": {/ {p = 1} p {print} p && /}/ {exit}' "$work/trace-section.json" > "$work/ton.json"
echo "  trace of $(num batches trace-section.json) batches:"
printf '    reuse off: cost %8.1f ms, SEMU %8.1f ms, %6.2f M actions/s\n' "$(num cost_ms toff.json)" "$(num semu_ms toff.json)" \
  "$(awk -v x="$(num actions_per_s toff.json)" 'BEGIN {print x / 1e6}')"
printf '    reuse on:  cost %8.1f ms, SEMU %8.1f ms, %6.2f M actions/s (chunk-cost hit rate %.3f)\n' "$(num cost_ms ton.json)" \
  "$(num semu_ms ton.json)" "$(awk -v x="$(num actions_per_s ton.json)" 'BEGIN {print x / 1e6}')" "$(num chunk_hit_rate ton.json)"
printf '    speed-up from reuse: costing %.2fx, cost + SEMU %.2fx; identical results: %s\n' \
  "$(num cost_speedup trace-section.json)" "$(num total_speedup trace-section.json)" \
  "$(grep -o '"identical": [a-z]*' "$work/trace-section.json" | sed 's/.*: //')"
