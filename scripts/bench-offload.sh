#!/usr/bin/env bash
# The sparse engine under a memory budget: decode tokens/s of a "7b"-shape (Mistral-7B:
# dim 4096, FFN 14336, 32 layers) Q4_0 dReLU synthetic sparse model with 0%, 25%, 50% and 75% of
# the FFN weights left on storage, for the paper's ablation ladder:
#   dense stream  every FFN neuron computed; what is not resident is read from storage every
#                 token (llama.cpp's mmap under memory pressure, with a generous static resident part)
#   + bundles     only predicted neurons computed, their bundles read; one LRU over all clusters
#   + cache       segmented cache: hot segment by activation frequency, cold LRU
#   + pipeline    reads overlapped with compute, clusters computed as they arrive
#   full engine   + the settings `plan` measures on this machine (hot/cold split, queue depth)
# and the dense engine on the original model in memory. Reads are O_DIRECT: every byte comes from
# the disk. The model (about 4 GB), its converted file (about 4.4 GB) with frequencies and
# predictors are made once into a cache folder.
#
#   scripts/bench-offload.sh [BUILD_DIR]     (default: build)
#   PWPI_BENCH_CACHE=DIR   cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/pwpi-bench)
#   PWPI_BENCH_TOKENS=N    decoded tokens per measurement (default 16; dense stream uses N/2)
#   PWPI_BENCH_OFFLOADS="0 0.25 0.5 0.75"
#   PWPI_BENCH_PRESET=1b    a smaller model (quick check; default 7b)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
make_model="$build/tools/make-model"
cli="$build/powerinfer2-cli/powerinfer2-cli"
for exe in "$make_model" "$cli"; do
  [[ -x "$exe" ]] || { echo "error: $exe not found; build first (scripts/build.sh)" >&2; exit 2; }
done
cache="${PWPI_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pwpi-bench}"
tokens="${PWPI_BENCH_TOKENS:-16}"
offloads="${PWPI_BENCH_OFFLOADS:-0 0.25 0.5 0.75}"
threads=2
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
json_num() { grep -o "\"$1\":[-0-9.e+]*" "$2" | head -n 1 | cut -d: -f2; }

preset="${PWPI_BENCH_PRESET:-7b}"
model="$cache/$preset-q4_0-drelu-seed1.gguf"
conv="$cache/$preset-q4_0-drelu-seed1.pi2.gguf"
echo "bench-offload: $preset preset, Q4_0, dReLU, sparsity 0.9, $threads threads, $tokens decoded tokens per figure"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ ! -f "$model" || "$make_model" -nt "$model" ]]; then
  echo "writing $model ..."
  "$make_model" -q --preset "$preset" --type q4_0 --activation drelu --seed 1 -t "$threads" -o "$model"
  rm -f "$conv"
fi
if [[ ! -f "$conv" || "$model" -nt "$conv" || "$cli" -nt "$conv" ]]; then
  # bench decodes pseudo-random token ids (as llama-bench does), so the activation profile and
  # the predictors are made from pseudo-random ids of the whole vocabulary too: a text in the
  # synthetic model's byte-level vocabulary would cover only ~100 of its 32000 ids. Clusters of
  # 4 bundles (28 KiB): what `plan` recommends for this model at 50% offload on this disk.
  "$cli" convert -m "$model" -o "$conv.tmp.gguf" --cluster-size 4 -t "$threads"
  "$cli" profile-activations -m "$model" --random-tokens 1024 --window 256 -o "$conv.tmp.gguf" -t "$threads"
  "$cli" train-predictor -m "$model" --random-tokens 1536 --samples 1024 --window 256 -o "$conv.tmp.gguf" \
    -t "$threads" | tail -n 1
  mv "$conv.tmp.gguf" "$conv"
fi

run() {  # run NAME OUT ARGS...: one bench, JSON into OUT
  local out="$1"; shift
  "$cli" bench -p 0 -r 1 -t "$threads" --json "$@" > "$out"
}
run "$work/dense.json" -m "$model" -n "$tokens"
dense=$(json_num decode_tok_s "$work/dense.json")
printf '\ndense engine, original model in memory: %.2f tok/s decode, peak RSS %.0f MiB\n\n' "$dense" \
  "$(echo "$(json_num peak_rss_bytes "$work/dense.json") / 1048576" | bc -l)"
printf '| offload | engine | decode tok/s | vs dense | MiB read/token | hit rate | I/O stall ms/token | budget MiB | peak RSS MiB |\n'
printf '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for off in $offloads; do
  "$cli" plan -m "$conv" --offload-ffn "$off" -o "$work/plan-$off.json" -t "$threads" > "$work/plan-$off.txt"
  for variant in stream bundles cache pipeline full; do
    case $variant in
      stream)   args=(--mode dense --no-cold-cache --no-pipeline); n=$(( tokens / 2 > 0 ? tokens / 2 : 1 )); name="dense stream" ;;
      bundles)  args=(--mode sparse --no-hot-segment --no-pipeline); n=$tokens; name="+ bundles" ;;
      cache)    args=(--mode sparse --no-pipeline --hot-share 0.85); n=$tokens; name="+ segmented cache" ;;
      pipeline) args=(--mode sparse --hot-share 0.85); n=$tokens; name="+ pipeline" ;;
      full)     args=(--mode sparse --plan "$work/plan-$off.json"); n=$tokens; name="full engine (plan)" ;;
    esac
    f="$work/$off-$variant.json"
    run "$f" -m "$conv" -n "$n" --offload-ffn "$off" "${args[@]}"
    tg=$(json_num decode_tok_s "$f")
    printf '| %.0f%% | %s | %.2f | %.2fx | %.2f | %.3f | %.1f | %.0f | %.0f |\n' "$(echo "$off * 100" | bc -l)" "$name" "$tg" \
      "$(echo "$tg / $dense" | bc -l)" "$(echo "$(json_num bytes_read_per_token "$f") / 1048576" | bc -l)" \
      "$(json_num cache_hit_rate "$f")" "$(json_num io_stall_ms_per_token "$f")" \
      "$(echo "$(json_num memory_budget_bytes "$f") / 1048576" | bc -l)" "$(echo "$(json_num peak_rss_bytes "$f") / 1048576" | bc -l)"
  done
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
