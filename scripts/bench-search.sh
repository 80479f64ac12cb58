#!/usr/bin/env bash
# PipeWeaver's schedule search against the baselines: for each shipped model and
# mix on 8 pipeline ranks, a 20-batch trace (seed 1), `search --json`; prints the mean step
# time per method, PipeWeaver's speed-up over the best baseline per batch (mean / max / min)
# and the search time per batch (p50 / max). Baselines get the same cost model and SEMU.
# The ~37B model runs on 8 nodes (pipeline 8 x data-parallel 8) with ZeRO-1, the 7B models
# on one 8-GPU node. Uses only the project's binaries, bash and awk.
#
#   scripts/bench-search.sh [BUILD_DIR] [THREADS]     (default: build, 2)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
threads="${2:-2}"
cli="$build/pipeweaver-cli/pipeweaver-cli"
[[ -x "$cli" ]] || { echo "error: $cli not found; build first (scripts/build.sh)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

num() { grep -o "\"$1\":[-0-9.e+]*" | head -n 1 | sed 's/.*://'; }
method() { grep -o "\"$1\":{[^}]*}" "$2" | num mean_step_ms; }
# "*" after a mean: some of that method's batches exceed a rank's memory even with recomputation.
oom() { [[ "$(grep -o "\"$1\":{[^}]*}" "$2" | num batches_over_memory)" == 0 ]] && echo " " || echo "*"; }

echo "bench-search: 8 ranks, 20 batches per trace, --threads $threads, budget 1000 ms; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %-15s %10s %10s %10s %10s %10s   %-22s %-6s %s\n' model mix pipeweaver gpipe 1f1b interl. zb-h1 "speed-up mean/max/min" bound "search p50/max ms"
while read -r model mix cluster extra; do
  "$cli" gen-trace -q --mix "$root/configs/mixes/$mix.json" --model "$root/configs/models/$model.json" \
    --batches 20 --seed 1 -o "$work/t.jsonl"
  # shellcheck disable=SC2086
  "$cli" search --model "$root/configs/models/$model.json" --cluster "$root/configs/clusters/$cluster.json" $extra \
    --trace "$work/t.jsonl" --threads "$threads" --json > "$work/o.json"
  tr -d ' \n' < "$work/o.json" > "$work/c.json"
  sp="$(grep -o '"speedup_vs_best_baseline":{[^}]*}' "$work/c.json")"
  se="$(grep -o '"search_ms":{[^}]*}' "$work/c.json")"
  bo="$(grep -o '"speedup_bound":{[^}]*}' "$work/c.json")"
  c="$work/c.json"
  printf '%-16s %-15s %9.0f%s %9.0f%s %9.0f%s %9.0f%s %9.0f%s   %5.3f / %5.3f / %5.3f  %5.3f  %6.1f / %6.1f\n' "$model" "$mix" \
    "$(method pipeweaver "$c")" "$(oom pipeweaver "$c")" "$(method gpipe "$c")" "$(oom gpipe "$c")" \
    "$(method 1f1b "$c")" "$(oom 1f1b "$c")" "$(method interleaved-1f1b "$c")" "$(oom interleaved-1f1b "$c")" \
    "$(method zb-h1 "$c")" "$(oom zb-h1 "$c")" \
    "$(num mean <<< "$sp")" "$(num max <<< "$sp")" "$(num min <<< "$sp")" "$(num mean <<< "$bo")" \
    "$(num p50 <<< "$se")" "$(num max <<< "$se")"
done <<'LIST'
llava-7b llava-instruct h100-80g-8x
llava-7b video-heavy h100-80g-8x
lmm-37b llava-instruct h100-80g-64x-pp8 --zero1
lmm-37b video-heavy h100-80g-64x-pp8 --zero1
audio-vision-7b audio-image h100-80g-8x
LIST
echo "(mean step time in ms per method; * = some batches exceed a rank's memory even with recomputation, so that"
echo " method is not a valid choice there; speed-up = fastest baseline that fits / PipeWeaver, per batch, PipeWeaver"
echo " charged for moving layers when its partition changes; bound = mean speed-up if PipeWeaver's own work were"
echo " spread evenly over the ranks with no bubble: no schedule of that work does better)"
